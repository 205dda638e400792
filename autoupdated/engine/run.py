"""The update engine: one run of podman's auto-update, as a plan.

    assemble   labelled running containers -> tasks, grouped by systemd unit   (policy.py)
    check      every task: is there a newer image?  concurrent, deduplicated   (digest.py)
    pull       every changed reference once, concurrently, bounded             (puller.py)
    restart    every unit with an update once, after all its pulls             (restarter.py)
    roll back  a unit whose restart failed: re-tag the old images, restart again

Errors are data: a bad label, registry, image or unit fails its own tasks and is
reported; every other container is still handled.  Only an unreachable podman
service or D-Bus stops the run as a whole (RunError).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import platform as _platform
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from autoupdated.adapters import journal as journal_mod
from autoupdated.model import AUTHFILE_LABEL, ContainerInfo, Credentials, ImageInfo, Platform, Policy, Status
from autoupdated.parts.policy import PolicyError, container_policy, missing_unit_error, unit_for
from autoupdated.reference import Reference, ReferenceError, parse_for_autoupdate

log = logging.getLogger("autoupdated")
progress = logging.getLogger("autoupdated.progress")


class HealthError(Exception):
    """The unit restarted, but its new container is not up: the update is rolled back."""


class RunError(Exception):
    """The run as a whole cannot happen (podman or D-Bus unreachable); the text says what to do."""


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    rollback: bool = True
    authfile: str | None = None
    tls_verify: bool | None = None
    podman_url: str | None = None
    bus: str | None = None
    check_concurrency: int = 16
    pull_concurrency: int = 4
    restart_concurrency: int = 4
    restart_timeout: float = 300.0
    include_containers: tuple[str, ...] = ()
    exclude_containers: tuple[str, ...] = ()
    include_units: tuple[str, ...] = ()
    exclude_units: tuple[str, ...] = ()
    platform: Platform | None = None
    health_gate: bool = True
    settle_time: float = 3.0
    health_timeout: float = 60.0
    poll_interval: float = 1.0
    registry_timeout: float = 30.0
    history_path: str | None = None  # the history database (autoupdated/history.py); None: no history
    update_failed_units: bool = False  # also update units that failed or crash-loop (podman #28925)


@dataclass
class Entry:
    """One line of the report, plus what the journal and the history need."""

    unit: str
    container_id: str
    container_name: str
    image: str
    policy: str
    updated: Status
    old_digest: str = ""
    new_digest: str = ""
    old_image_id: str = ""
    new_image_id: str = ""
    error: str | None = None

    def report_row(self) -> dict[str, str]:
        from autoupdated.report import row

        return row(self.unit, self.container_id, self.container_name, self.image, self.policy, str(self.updated))


@dataclass
class RunResult:
    entries: list[Entry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    restarted_units: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def counts(self) -> dict[str, int]:
        counts = {str(status): 0 for status in Status}
        for entry in self.entries:
            counts[str(entry.updated)] += 1
        return counts

    def summary(self) -> str:
        c = self.counts()
        parts = [
            f"{c['true']} updated",
            f"{c['false']} unchanged",
            f"{c['pending']} pending",
            f"{c['rolled back']} rolled back",
            f"{c['failed']} failed",
        ]
        text = f"{len(self.entries)} containers: " + ", ".join(parts)
        if self.errors:
            text += f"; {len(self.errors)} errors"
        return text


@dataclass
class Task:
    """One container to update, and everything the run learns about it."""

    container: ContainerInfo
    policy: Policy
    unit: str
    authfile: str | None
    image: ImageInfo | None = None
    reference: Reference | None = None
    credentials: Credentials | None = None
    status: Status = Status.FAILED
    new_digest: str = ""
    new_image_id: str = ""
    prepared: bool = False  # the new image is in local storage, waiting for the unit restart
    error: str | None = None

    @property
    def raw_image(self) -> str:
        return self.container.raw_image_name

    def fail(self, message: str) -> str:
        self.status = Status.FAILED
        self.prepared = False
        self.error = message
        return message

    def entry(self) -> Entry:
        return Entry(
            unit=self.unit,
            container_id=self.container.id,
            container_name=self.container.name,
            image=self.raw_image,
            policy=str(self.policy),
            updated=self.status,
            old_digest=self.image.digest if self.image else "",
            new_digest=self.new_digest,
            old_image_id=self.container.image_id,
            new_image_id=self.new_image_id,
            error=self.error,
        )


class PodmanPort(Protocol):
    async def labelled_containers(self) -> list[ContainerInfo]: ...
    async def pod_infra_labels(self, pod_id: str) -> dict[str, str]: ...
    async def images(self) -> dict[str, ImageInfo]: ...
    async def image_id(self, name: str) -> str: ...
    async def tag(self, image_id: str, name: str) -> None: ...
    async def container_state(self, name_or_id: str) -> Any: ...
    async def run_healthcheck(self, name_or_id: str) -> str: ...


class HistoryPort(Protocol):
    """Durable record of updates (autoupdated/history.py): intent before anything changes for a
    unit (before its pulls), step after the pulls (new image IDs), outcome after the restart."""

    def intent(self, unit: str, entries: list[Entry]) -> object: ...
    def step(self, record: object, entries: list[Entry]) -> None: ...
    def outcome(self, record: object, entries: list[Entry]) -> None: ...
    def remember(self, seen: Iterable[tuple[str, ContainerInfo]]) -> None: ...
    def held(self, reference: str, digest: str) -> str | None: ...


class FailedUnitsPort(Protocol):
    """Units that failed or crash-loop, with the container they ran (autoupdated/recovery.py)."""

    async def find(self, skip_units: set[str]) -> list[ContainerInfo]: ...


class ComparerPort(Protocol):
    async def check(
        self, ref: Reference, *, credentials: Credentials | None, platform: Platform, local_digests: frozenset[str]
    ) -> Any: ...


class PullerPort(Protocol):
    async def pull(self, reference: str, *, credentials: Credentials | None, tls_verify: bool | None) -> str: ...


class RestarterPort(Protocol):
    async def connect(self) -> None: ...
    async def restart(self, unit: str) -> None: ...
    async def close(self) -> None: ...


@dataclass
class Adapters:
    """The engine's view of the outside world; tests may swap any of them."""

    podman: PodmanPort
    comparer: ComparerPort
    puller: PullerPort
    restarter: RestarterPort
    credentials_for: Callable[[Reference, str | None], Credentials | None]
    journal: journal_mod.Journal | None = None
    history: HistoryPort | None = None
    failed_units: FailedUnitsPort | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            with contextlib.suppress(Exception):
                await close()


def host_platform() -> Platform:
    """The platform podman would pull for on this machine (GOOS/GOARCH names)."""
    machine = _platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", None),
        "amd64": ("amd64", None),
        "aarch64": ("arm64", None),
        "arm64": ("arm64", None),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", None),
        "i386": ("386", None),
        "ppc64le": ("ppc64le", None),
        "s390x": ("s390x", None),
        "riscv64": ("riscv64", None),
    }.get(machine, (machine, None))
    return Platform(os="linux", architecture=arch, variant=variant)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class Engine:
    def __init__(self, options: Options, adapters: Adapters, stop: asyncio.Event | None = None) -> None:
        self.options = options
        self.a = adapters
        self.stop = stop or asyncio.Event()
        self.result = RunResult()
        self.units: dict[str, list[Task]] = {}
        self.rolled_back: dict[str, str] = {}  # raw image -> unit whose restart proved it bad
        self._canaries: dict[str, str] = {}  # raw image -> the unit that restarts onto it first
        self._proof: dict[str, asyncio.Event] = {}
        self._restart_bound = asyncio.Semaphore(max(1, options.restart_concurrency))
        self._records: dict[str, object] = {}  # unit -> its history record until the outcome

    # -- the plan -------------------------------------------------------------------------

    async def run(self) -> RunResult:
        try:
            containers = await self.a.podman.labelled_containers()
        except Exception as err:
            raise RunError(str(err)) from None
        await self.assemble(containers)
        self.history_remember()
        if self.options.update_failed_units and self.a.failed_units is not None:
            await self.assemble_failed_units()
        if self.units:
            tasks = [task for tasks in self.units.values() for task in tasks]
            if not self.options.dry_run:
                await self.connect_bus()
            await self.check(tasks)
            if self.options.dry_run:
                for task in tasks:
                    if task.prepared:
                        task.status, task.prepared = Status.PENDING, False
            else:
                self.record_intents()
                await asyncio.gather(*(self.pull_and_update(unit, ts) for unit, ts in sorted(self.units.items())))
        self.finish()
        return self.result

    async def connect_bus(self) -> None:
        """Connect before any pull: a run that could never restart must not pull either."""
        from autoupdated.parts.restarter import BusUnavailable

        try:
            await self.a.restarter.connect()
        except BusUnavailable as err:
            raise RunError(str(err)) from None

    # -- 1. assemble ----------------------------------------------------------------------

    async def assemble(self, containers: Iterable[ContainerInfo]) -> None:
        infra: dict[str, dict[str, str] | BaseException] = {}
        for container in sorted(containers, key=lambda c: c.name):
            if container.state and container.state != "running":
                continue
            try:
                policy = container_policy(container)
            except PolicyError as err:
                self.error(f'auto-updating container "{container.id}": {err}')
                continue
            if policy is None or policy is Policy.DISABLED:
                continue
            if self.options.include_containers and not _matches(container.name, self.options.include_containers):
                continue
            if _matches(container.name, self.options.exclude_containers):
                continue
            infra_labels: dict[str, str] | None = None
            if container.pod_id:
                if container.pod_id not in infra:
                    try:
                        infra[container.pod_id] = await self.a.podman.pod_infra_labels(container.pod_id)
                    except Exception as err:
                        infra[container.pod_id] = err
                found = infra[container.pod_id]
                if isinstance(found, BaseException):
                    self.error(f'auto-updating container "{container.id}": looking up pod\'s systemd unit: {found}')
                    continue
                infra_labels = found
            unit = unit_for(container, infra_labels)
            if not unit:
                self.error(missing_unit_error(container))
                continue
            if self.options.include_units and not _matches(unit, self.options.include_units):
                continue
            if _matches(unit, self.options.exclude_units):
                continue
            authfile = container.labels.get(AUTHFILE_LABEL, self.options.authfile)
            self.units.setdefault(unit, []).append(Task(container, policy, unit, authfile))

    async def assemble_failed_units(self) -> None:
        """Opt-in (update_failed_units, podman issue #28925): a unit that failed or crash-loops has
        no running container, so podman never updates it, and a fixed release never reaches it.
        These units (found from systemd and the history, autoupdated/recovery.py) join the run
        like running ones: checked, pulled, restarted, health-gated, rolled back."""
        assert self.a.failed_units is not None
        try:
            found = await self.a.failed_units.find(set(self.units))
        except Exception as err:
            self.warn(f"looking for failed units to update (update_failed_units): {err}")
            return
        for container in found:
            progress.info("Unit of container %s has failed: checking it for an update too", container.name)
        await self.assemble(found)

    # -- 2. check -------------------------------------------------------------------------

    async def check(self, tasks: list[Task]) -> None:
        try:
            images = await self.a.podman.images()
        except Exception as err:
            raise RunError(f"listing local images: {err}") from None
        platform = self.options.platform or host_platform()
        await asyncio.gather(*(self.check_task(task, images, platform) for task in tasks))

    async def check_task(self, task: Task, images: dict[str, ImageInfo], platform: Platform) -> None:
        cid = task.container.id
        task.image = images.get(task.container.image_id)
        if task.image is None:
            self.error(task.fail(f"internal error: no image found for ID {task.container.image_id} (container {cid})"))
            return
        try:
            if task.policy is Policy.REGISTRY:
                available = await self.registry_update_available(task, platform)
            else:
                available = await self.local_update_available(task, images)
        except Exception as err:
            self.error(task.fail(f"checking image updates for container {cid}: {err}"))
            return
        task.prepared = available and not self.held(task)
        task.status = Status.NOT_UPDATED

    async def registry_update_available(self, task: Task, platform: Platform) -> bool:
        assert task.image is not None
        ref = parse_for_autoupdate(task.raw_image)
        task.reference = ref
        if ref.digest is not None:
            self.warn(
                f"container {task.container.name} ({task.container.id[:12]}) runs the digest-pinned image "
                f'"{task.raw_image}": a pinned image never changes, so it is not auto-updated '
                "(use a tag without @sha256:... to follow updates)"
            )
            return False
        task.credentials = self.a.credentials_for(ref, task.authfile)
        result = await self.a.comparer.check(
            ref, credentials=task.credentials, platform=platform, local_digests=task.image.all_digests
        )
        task.new_digest = str(getattr(result, "remote_digest", "") or "")
        return bool(result.update_available)

    async def local_update_available(self, task: Task, images: dict[str, ImageInfo]) -> bool:
        try:
            image_id = await self.a.podman.image_id(task.raw_image)
        except Exception as err:
            raise ReferenceError(f'looking up local image "{task.raw_image}": {err}') from None
        if image_id == task.container.image_id:
            return False
        task.new_image_id = image_id
        if new := images.get(image_id):
            task.new_digest = new.digest
        return True

    # -- 3. pull --------------------------------------------------------------------------

    async def pull(self, tasks: list[Task]) -> None:
        async def pull_task(task: Task) -> None:
            if self.stop.is_set():
                self.postpone(task)
                return
            try:
                task.new_image_id = await self.a.puller.pull(
                    task.raw_image, credentials=task.credentials, tls_verify=self.options.tls_verify
                )
            except Exception as err:
                self.error(task.fail(f"updating image for container {task.container.id}: {err}"))

        await asyncio.gather(*(pull_task(t) for t in tasks if t.prepared and t.policy is Policy.REGISTRY))

    async def pull_and_update(self, unit: str, tasks: list[Task]) -> None:
        """A unit goes on as soon as all of its own images are pulled (never before), so restarts
        overlap the pulls of other units' images, as podman's pull-then-restart per unit does.
        A reference several units use is pulled once (the puller shares it)."""
        await self.pull(tasks)
        await self.update_unit(unit, tasks)

    # -- 4. restart and roll back -----------------------------------------------------------

    async def update_unit(self, unit: str, tasks: list[Task]) -> None:
        try:
            await self._canary_update_unit(unit, tasks)
        finally:
            # Whatever kept the unit from its restart (failed pulls, a stop, the canary's rollback):
            # its history record gets the outcome now.
            if unit in self._records:
                self.history_outcome(self._records.pop(unit), tasks)

    async def _canary_update_unit(self, unit: str, tasks: list[Task]) -> None:
        if not any(task.prepared for task in tasks):
            return
        # Canary order: the first unit ready (its pulls done; by name among units ready together)
        # that updates an image restarts alone; the other units on that image wait until it has
        # proven the image (restarted and passed the health gate), then go in parallel.  A
        # rollback in the canary keeps them off the bad image (podman would restart them onto
        # it).  Every unit claims its images in the same (sorted) order and waits at the first
        # one another unit claimed, so the waits cannot form a cycle.
        for ref in sorted({task.raw_image for task in tasks if task.prepared}):
            canary = self._canaries.setdefault(ref, unit)
            if canary != unit:
                await self._proven(ref).wait()
        try:
            await self._update_unit(unit, tasks)
        finally:
            for ref, canary in self._canaries.items():
                if canary == unit:
                    self._proven(ref).set()

    def _proven(self, ref: str) -> asyncio.Event:
        return self._proof.setdefault(ref, asyncio.Event())

    async def _update_unit(self, unit: str, tasks: list[Task]) -> None:
        for task in tasks:
            if task.prepared and task.raw_image in self.rolled_back:
                bad_unit = self.rolled_back[task.raw_image]
                self.error(
                    task.fail(
                        f"not updating container {task.container.id} in unit {unit}: the new image of "
                        f'"{task.raw_image}" failed in unit {bad_unit} and was rolled back'
                    )
                )
        if not any(task.prepared for task in tasks):
            return
        update_error: Exception | None = None
        async with self._restart_bound:
            if self.stop.is_set():
                for task in tasks:
                    self.postpone(task)
                return
            members = [task for task in tasks if task.status is not Status.FAILED or task.prepared]
            record = self._records.pop(unit, None)
            if record is None:
                record = self.history_intent(unit, members)
                if record is None and self.a.history is not None:
                    return  # not recorded: no restart (the tasks say why)
            self.history_step(record, members)
            progress.info("Restarting unit %s", unit)
            try:
                await self.a.restarter.restart(unit)
                self.result.restarted_units.append(unit)
            except Exception as err:
                update_error = err
        # The bound is on restart jobs (what loads the machine); the health gate only waits,
        # so other units restart meanwhile.
        if update_error is None:
            try:
                await self.verify_unit(unit, members)
            except Exception as err:
                update_error = err
        if update_error is None:
            for task in members:
                task.status, task.prepared = Status.UPDATED, False
            self.history_outcome(record, members)
            return
        for task in members:
            task.status, task.prepared = Status.FAILED, False
        if not self.options.rollback:
            self.error(f"restarting unit {unit} during update: {update_error}")
            for task in members:
                task.error = str(update_error)
            self.history_outcome(record, members)
            return
        self.warn(f"restarting unit {unit} during update: {update_error}; rolling back to the previous image")
        await self.roll_back(unit, members, update_error)
        self.history_outcome(record, members)

    async def roll_back(self, unit: str, members: list[Task], update_error: BaseException) -> None:
        """Re-tag every task's previous image with its name and restart the unit onto them."""
        for task in members:
            if task.new_image_id and task.new_image_id != task.container.image_id:
                self.rolled_back.setdefault(task.raw_image, unit)
            try:
                await self.a.podman.tag(task.container.image_id, task.raw_image)
            except Exception as err:
                self.error(task.fail(f"rolling back image for container {task.container.id} in unit {unit}: {err}"))
        try:
            async with self._restart_bound:
                await self.a.restarter.restart(unit)
            self.result.restarted_units.append(unit)
        except Exception as err:
            message = f"restarting unit {unit} during rollback: {err}"
            self.error(message)
            for task in members:
                task.fail(message)
            return
        for task in members:
            if task.error is None:
                task.status = Status.ROLLED_BACK
                task.error = f"update failed and was rolled back: {update_error}"

    async def verify_unit(self, unit: str, members: list[Task]) -> None:
        """The health gate: `done` from systemd is not enough, the new containers must be up.

        A container with a healthcheck must report healthy within health_timeout; one without
        must still be running, as the same container, after settle_time.  This catches the image
        that starts and crashes a second later, which podman never rolls back.
        """
        if not self.options.health_gate:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.health_timeout
        first_seen: dict[str, str] = {}
        settled_at: dict[str, float] = {}  # the settle time runs from when the new container is first seen
        pending = {task.container.name: task for task in members}

        def soon() -> float:
            return loop.time() + self.options.poll_interval

        while pending:
            # Containers without a healthcheck, once seen up on their new image, are only looked
            # at again when the settle time is over: a crash in between leaves them gone, exited or
            # re-created (another ID), so polling them every second would only cost podman CPU.
            wake = deadline
            for name, task in list(pending.items()):
                state = await self.a.podman.container_state(name)
                look_again: float | None  # None: this container has proven itself
                if state is None or not state.running:
                    if name in first_seen:
                        code = f" with code {state.exit_code}" if state is not None else ""
                        raise HealthError(
                            f"container {name} in unit {unit} exited{code} within "
                            f"{self.options.settle_time:g} s of its start; see `journalctl -u {unit}`"
                        )
                    look_again = soon()
                elif task.new_image_id and state.image_id != task.new_image_id:
                    look_again = soon()  # the unit still runs the old container: wait for systemd to replace it
                elif first_seen.setdefault(name, state.id) != state.id:
                    raise HealthError(
                        f"container {name} in unit {unit} was restarted after its update "
                        f"(it crashed and systemd started it again); see `journalctl -u {unit}`"
                    )
                elif state.has_healthcheck:
                    healthy = await self.a.podman.run_healthcheck(name) == "healthy"
                    look_again = None if healthy else soon()
                else:
                    settled = settled_at.setdefault(name, loop.time() + self.options.settle_time)
                    look_again = None if loop.time() >= settled else settled
                if look_again is None:
                    del pending[name]
                else:
                    wake = min(wake, look_again)
            if not pending:
                return
            if loop.time() >= deadline:
                names = ", ".join(sorted(pending))
                raise HealthError(
                    f"container {names} in unit {unit} did not become "
                    f"{'healthy' if any(n in first_seen for n in pending) else 'running'} within "
                    f"{self.options.health_timeout:g} s; see `podman healthcheck run` and `journalctl -u {unit}`"
                )
            await asyncio.sleep(max(0.0, wake - loop.time()))

    # -- history --------------------------------------------------------------------------

    def record_intents(self) -> None:
        """Before any pull (a pull moves the tag): record every unit about to change, so a crash
        from here on is finished on the next start (autoupdated/recovery.py)."""
        if self.a.history is None:
            return
        for unit, tasks in sorted(self.units.items()):
            if any(task.prepared for task in tasks):
                members = [task for task in tasks if task.status is not Status.FAILED or task.prepared]
                record = self.history_intent(unit, members)
                if record is not None:
                    self._records[unit] = record

    def history_intent(self, unit: str, members: list[Task]) -> object:
        """Record what is about to happen; a unit whose intent cannot be recorded is not touched."""
        if self.a.history is None:
            return None
        try:
            return self.a.history.intent(unit, [task.entry() for task in members])
        except Exception as err:
            for task in members:
                if task.prepared:
                    self.error(task.fail(f"not updating container {task.container.id} in unit {unit}: {err}"))
            return None

    def history_step(self, record: object, members: list[Task]) -> None:
        if self.a.history is None or record is None:
            return
        try:
            self.a.history.step(record, [task.entry() for task in members])
        except Exception as err:
            self.warn(f"unit {unit_name(record)}: {err}")

    def history_outcome(self, record: object, members: list[Task]) -> None:
        if self.a.history is None or record is None:
            return
        try:
            self.a.history.outcome(record, [task.entry() for task in members])
        except Exception as err:
            self.warn(f"{err}; the next start of the daemon checks the unit again")

    def held(self, task: Task) -> bool:
        """An update `autoupdated rollback` undid is not applied again (a newer image is)."""
        if self.a.history is None or not task.new_digest:
            return False
        try:
            when = self.a.history.held(task.raw_image, task.new_digest)
        except Exception as err:
            self.warn(str(err))
            return False
        if when is None:
            return False
        self.warn(
            f"container {task.container.name} ({task.container.id[:12]}): not updating to {task.new_digest} of "
            f'"{task.raw_image}": it was rolled back on request ({when}); a newer image will be applied'
        )
        return True

    def history_remember(self) -> None:
        if self.a.history is None:
            return
        try:
            self.a.history.remember((unit, task.container) for unit, tasks in self.units.items() for task in tasks)
        except Exception as err:
            self.warn(str(err))

    # -- bookkeeping ----------------------------------------------------------------------

    def postpone(self, task: Task) -> None:
        """Stopping: an update found but not applied stays pending for the next run."""
        task.status, task.prepared = Status.PENDING, False
        self.warn(f"not updating container {task.container.name} ({task.container.id[:12]}): autoupdated is stopping")

    def error(self, message: str) -> None:
        self.result.errors.append(message)
        log.error("%s", message)

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        log.warning("%s", message)

    def finish(self) -> None:
        for unit in sorted(self.units):
            for task in self.units[unit]:
                entry = task.entry()
                self.result.entries.append(entry)
                self.journal_entry(entry)
        pulled = getattr(self.a.puller, "pulled", [])
        self.result.pulled = list(pulled)
        self.result.finished = time.time()

    def journal_entry(self, entry: Entry) -> None:
        if self.a.journal is None:
            return
        priority = {
            Status.UPDATED: journal_mod.NOTICE,
            Status.FAILED: journal_mod.ERR,
            Status.ROLLED_BACK: journal_mod.WARNING,
        }.get(entry.updated, journal_mod.INFO)
        verb = {
            Status.UPDATED: "updated to",
            Status.NOT_UPDATED: "is up to date with",
            Status.PENDING: "has an update pending for",
            Status.FAILED: "failed to update to",
            Status.ROLLED_BACK: "was rolled back from",
        }[entry.updated]
        message = f"container {entry.container_name} ({entry.container_id[:12]}) in {entry.unit} {verb} {entry.image}"
        if entry.error:
            message += f": {entry.error}"
        self.a.journal.send(
            message,
            priority=priority,
            fields={
                "MESSAGE_ID": journal_mod.MESSAGE_ID_OUTCOME,
                "CONTAINER_ID": entry.container_id,
                "CONTAINER_NAME": entry.container_name,
                "IMAGE": entry.image,
                "UNIT": entry.unit,
                "POLICY": entry.policy,
                "RESULT": str(entry.updated),
                "OLD_DIGEST": entry.old_digest,
                "NEW_DIGEST": entry.new_digest,
                "OLD_IMAGE_ID": entry.old_image_id,
                "NEW_IMAGE_ID": entry.new_image_id,
                "ERROR": entry.error or "",
            },
        )


def unit_name(record: object) -> str:
    return str(getattr(record, "unit", record))


async def run(options: Options, *, adapters: Adapters, stop: asyncio.Event | None = None) -> RunResult:
    """One run of the update job over `adapters` (closed afterwards).  Raises RunError only when
    podman or D-Bus is unreachable."""
    try:
        return await Engine(options, adapters, stop).run()
    finally:
        await adapters.aclose()
