"""Failed and crash-looping units (opt-in `update_failed_units`, podman issue #28925).

A unit whose container crashed is failed or crash-looping, and with `podman generate systemd
--new` its container is removed, so podman's label scan never sees it and a fixed release never
reaches it.  The candidates are the units the engine saw running a labelled container in an
earlier run (the history's `units` table: unit, container name, reference, policy, auth file)
plus labelled containers podman still has in a non-running state; a candidate is taken when
systemd says its unit is loaded and `failed`, or `activating` in `auto-restart` (between
crash-loop restarts).  Its container then joins the run as if it ran the image its reference
names locally now.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from autoupdated.engine.ports import StoppedContainersPort, UnitsPort
from autoupdated.errors import BusUnavailable
from autoupdated.model import AUTHFILE_LABEL, AUTOUPDATE_LABEL, UNIT_LABEL, ContainerInfo, KnownUnit

log = logging.getLogger("autoupdated")


class KnownUnitsPort(Protocol):
    def known_units(self) -> list[KnownUnit]: ...


def container_of(known: KnownUnit) -> ContainerInfo:
    """A container the history remembers, as the label scan would have listed it."""
    labels = {UNIT_LABEL: known.unit, AUTOUPDATE_LABEL: known.policy}
    if known.authfile:
        labels[AUTHFILE_LABEL] = known.authfile
    return ContainerInfo(
        id=known.container_id,
        name=known.container_name,
        image_id=known.image_id,
        raw_image_name=known.reference,
        labels=labels,
        state="",
    )


class FailedUnits:
    """The engine's FailedUnitsPort: containers of units that failed or crash-loop; see above."""

    def __init__(self, podman: StoppedContainersPort, history: KnownUnitsPort | None, units: UnitsPort) -> None:
        self.podman = podman
        self.history = history
        self.units = units

    async def candidates(self) -> dict[str, dict[str, ContainerInfo]]:
        """unit -> container name -> what the container was (labels, reference), from both sources."""
        found: dict[str, dict[str, ContainerInfo]] = {}
        if self.history is not None:
            for known in self.history.known_units():
                found.setdefault(known.unit, {})[known.container_name] = container_of(known)
        for container in await self.podman.stopped_labelled_containers():
            unit = container.labels.get(UNIT_LABEL)
            if unit:
                found.setdefault(unit, {})[container.name] = container
        return found

    async def find(self, skip_units: set[str]) -> list[ContainerInfo]:
        found = []
        for unit, containers in sorted((await self.candidates()).items()):
            if unit in skip_units:
                continue
            try:
                state = await self.units.state(unit)
            except BusUnavailable:
                raise
            except Exception as err:
                log.debug("reading the state of unit %s: %s", unit, err)
                continue
            if state.load_state != "loaded" or not state.broken:
                continue
            for container in containers.values():
                try:
                    image_id = await self.podman.image_id(container.raw_image_name)
                except Exception as err:
                    log.warning(
                        "unit %s is %s but the image %s of its container %s is not in local storage (%s): "
                        "not updating it",
                        unit,
                        state,
                        container.raw_image_name,
                        container.name,
                        err,
                    )
                    continue
                log.info("unit %s is %s: its container %s joins the run", unit, state, container.name)
                found.append(dataclasses.replace(container, image_id=image_id, state=""))
        return found
