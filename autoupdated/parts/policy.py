"""Part 1 of the engine: which containers auto-update, how, and in which systemd unit.

Pure functions over labels, with podman's policy names and error texts.
"""

from __future__ import annotations

from collections.abc import Mapping

from autoupdated.model import AUTOUPDATE_LABEL, UNIT_LABEL, ContainerInfo, Policy

# The label values podman accepts; "image" is the legacy name of "registry".
SUPPORTED_POLICIES: Mapping[str, Policy] = {
    "": Policy.DISABLED,
    "disabled": Policy.DISABLED,
    "image": Policy.REGISTRY,
    "registry": Policy.REGISTRY,
    "local": Policy.LOCAL,
}


class PolicyError(ValueError):
    """An unknown label value; the container is skipped, the run goes on."""


def lookup_policy(value: str) -> Policy:
    """The policy for a label value, or PolicyError with podman's exact text."""
    try:
        return SUPPORTED_POLICIES[value]
    except KeyError:
        valid = " ".join(f'"{key}"' for key in sorted(k for k in SUPPORTED_POLICIES if k))
        raise PolicyError(f'invalid auto-update policy "{value}": valid policies are [{valid}]') from None


def container_policy(container: ContainerInfo) -> Policy | None:
    """None when the container has no auto-update label at all."""
    if AUTOUPDATE_LABEL not in container.labels:
        return None
    return lookup_policy(container.labels[AUTOUPDATE_LABEL])


def unit_for(container: ContainerInfo, infra_labels: Mapping[str, str] | None = None) -> str | None:
    """The unit to restart: the container's own, or for a container in a pod the pod's unit.

    A pod's unit is recorded on its infra container; restarting it recreates every
    container of the pod, so all of them share that one restart.
    """
    if container.pod_id:
        return (infra_labels or {}).get(UNIT_LABEL)
    return container.labels.get(UNIT_LABEL)


def missing_unit_error(container: ContainerInfo) -> str:
    where = "its pod's infra container has" if container.pod_id else "it has"
    return (
        f'auto-updating container "{container.id}": no {UNIT_LABEL} label found ({where} none): '
        f"container {container.name!r} must run in a systemd unit that recreates it; generate one with "
        "`podman generate systemd --new` or use a Quadlet .container file"
    )
