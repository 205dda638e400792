"""What the engine needs of the outside world: one Protocol per port, with concrete types.

Production adapters are built in autoupdated/wiring.py; tests have one fake per port
(tests/fakes.py).  The engine imports no adapter: only these ports and the plain data of
autoupdated/model.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from autoupdated.controls.model import Hook, HookResult, HookRun, Waiting
from autoupdated.model import (
    CheckResult,
    ContainerInfo,
    ContainerState,
    Credentials,
    Entry,
    ImageInfo,
    IntentRecord,
    Platform,
    PlatformSource,
    UnitState,
)
from autoupdated.reference import Reference


class PodmanPort(Protocol):
    async def labelled_containers(self) -> list[ContainerInfo]: ...
    async def pod_infra_labels(self, pod_id: str) -> dict[str, str]: ...
    async def images(self) -> dict[str, ImageInfo]: ...
    async def image(self, name_or_id: str) -> ImageInfo: ...
    async def image_id(self, name: str) -> str: ...
    async def tag(self, image_id: str, name: str) -> None: ...
    async def container_state(self, name: str) -> ContainerState | None: ...
    async def run_healthcheck(self, name_or_id: str) -> str: ...


class StoppedContainersPort(Protocol):
    async def stopped_labelled_containers(self) -> list[ContainerInfo]: ...
    async def image_id(self, name: str) -> str: ...


class ComparerPort(Protocol):
    async def check(
        self,
        ref: Reference,
        *,
        credentials: Credentials | None,
        platform: Platform | PlatformSource,
        local_digests: frozenset[str],
    ) -> CheckResult: ...

    def prefetch(self, ref: Reference, credentials: Credentials | None) -> None:
        """Start asking the registry about `ref` before the local digests are known."""
        ...


class CredentialsPort(Protocol):
    """Credentials for a reference from the auth-file chain (`authfile` first when given)."""

    async def __call__(self, ref: Reference, authfile: str | None) -> Credentials | None: ...


class PullerPort(Protocol):
    pulled: list[str]

    async def pull(self, reference: str, *, credentials: Credentials | None, tls_verify: bool | None) -> str: ...


class RestarterPort(Protocol):
    async def connect(self) -> None: ...
    async def restart(self, unit: str) -> None: ...
    async def close(self) -> None: ...


class UnitsPort(Protocol):
    """Unit states from systemd (recovery and failed units)."""

    async def connect(self) -> None: ...
    async def state(self, unit: str) -> UnitState: ...
    async def close(self) -> None: ...


class HistoryPort(Protocol):
    """Durable record of updates (adapters/history.py): intent before anything changes for a unit
    (before its pulls), step after the pulls (new image IDs), outcome after the restart."""

    def intent(self, unit: str, entries: list[Entry]) -> IntentRecord: ...
    def step(self, record: IntentRecord, entries: list[Entry]) -> None: ...
    def outcome(self, record: IntentRecord, entries: list[Entry]) -> None: ...
    def remember(self, seen: Iterable[tuple[str, ContainerInfo]]) -> None: ...
    def held(self, reference: str, digest: str) -> str | None: ...


class OutcomeSink(Protocol):
    """Where each container's outcome is told (the journal, in production)."""

    def outcome(self, entry: Entry) -> None: ...


class FailedUnitsPort(Protocol):
    """Units that failed or crash-loop, with the container they ran (engine/failed.py)."""

    async def find(self, skip_units: set[str]) -> list[ContainerInfo]: ...


class HooksPort(Protocol):
    """Runs an operator's hook command (adapters/hooks.py): timeout, environment, output captured."""

    async def run(self, hook: Hook, env: dict[str, str]) -> HookResult: ...


class ControlStorePort(Protocol):
    """What the controls remember between runs (adapters/controlstore.py, in the history database)."""

    def first_seen(self, reference: str, digest: str, now: float) -> float: ...
    def approved(self, container: str) -> str | None: ...
    def waiting(self, entry: Waiting) -> None: ...
    def done(self, container: str) -> None: ...
    def tags_listed(self, repository: str) -> tuple[float, list[str]] | None: ...
    def remember_tags(self, repository: str, tags: list[str], now: float) -> None: ...
    def new_tags(self, container: str, image: str, newer: list[str]) -> None: ...
    def hook_ran(self, run: HookRun) -> None: ...


class ImageAgePort(Protocol):
    """The image config's `created` time of a remote manifest (min_image_age with image_age_from = "created")."""

    async def image_created(
        self, ref: Reference, digest: str, credentials: Credentials | None, platform: Platform
    ) -> float | None: ...


class TagListerPort(Protocol):
    """A repository's tags (GET /v2/<name>/tags/list, every page): the registry client."""

    async def list_tags(self, ref: Reference, credentials: Credentials | None) -> list[str]: ...


class EventsPort(Protocol):
    """podman's event log: each run is recorded as podman records its own (`podman events`)."""

    def system_event(self, status: str) -> None: ...


@dataclass
class Adapters:
    """The engine's view of the outside world; autoupdated/wiring.py builds the real ones."""

    podman: PodmanPort
    comparer: ComparerPort
    puller: PullerPort
    restarter: RestarterPort
    credentials_for: CredentialsPort
    journal: OutcomeSink | None = None
    history: HistoryPort | None = None
    failed_units: FailedUnitsPort | None = None
    units: UnitsPort | None = None
    hooks: HooksPort | None = None
    control_store: ControlStorePort | None = None
    tags: TagListerPort | None = None
    image_age: ImageAgePort | None = None
    events: EventsPort | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            with contextlib.suppress(Exception):
                await close()
