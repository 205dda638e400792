"""One run of podman's auto-update, as a plan:

    assemble   labelled running containers -> tasks, grouped by systemd unit   (parts/policy.py)
    check      every task: is there a newer image?  concurrent, deduplicated   (parts/digest.py)
    pull       every changed reference once, concurrently, bounded             (parts/puller.py)
    update     every unit with an update once, after all its pulls: restart,   (engine/unit.py)
               health gate, roll back

Errors are data: a bad label, registry, image or unit fails its own tasks and is reported;
every other container is still handled.  Only an unreachable podman service or D-Bus stops the
run as a whole (RunError).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import platform as _platform
import time
from collections.abc import Iterable, Sequence

from autoupdated.engine.controls import ControlsStep
from autoupdated.engine.ledger import Ledger, Notes
from autoupdated.engine.options import Options
from autoupdated.engine.ports import Adapters
from autoupdated.engine.task import Task
from autoupdated.engine.unit import UnitUpdater
from autoupdated.errors import AuthenticationRequired, BusUnavailable, NoSuchObject, PodmanError, RunError
from autoupdated.model import (
    AUTHFILE_LABEL,
    UNIT_LABEL,
    ContainerInfo,
    ImageInfo,
    Platform,
    PlatformSource,
    Policy,
    RunResult,
    Status,
)
from autoupdated.parts.digest import local_update_available
from autoupdated.parts.policy import PolicyError, container_policy, missing_unit_error, unit_for
from autoupdated.reference import ReferenceError, parse_for_autoupdate

# `autoupdated check --timings` shows this logger's one line per run: what each step cost.
timings = logging.getLogger("autoupdated.timings")

_MACHINES = {
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
}


def host_platform() -> Platform:
    """The platform podman would pull for on this machine (GOOS/GOARCH names)."""
    machine = _platform.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, None))
    return Platform(os="linux", architecture=arch, variant=variant)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class Engine:
    def __init__(self, options: Options, adapters: Adapters, stop: asyncio.Event | None = None) -> None:
        self.options = options
        self.a = adapters
        self.stop = stop or asyncio.Event()
        self.notes = Notes()
        self.ledger = Ledger(adapters.history, self.notes)
        self.updater = UnitUpdater(options, adapters.podman, adapters.restarter, self.notes, self.ledger, self.stop)
        self.units: dict[str, list[Task]] = {}
        self.controls = ControlsStep(
            options, adapters.control_store, adapters.hooks, self.notes, adapters.tags, adapters.image_age
        )
        self._platforms: dict[str, asyncio.Future[Platform]] = {}

    @property
    def result(self) -> RunResult:
        return self.notes.result

    async def run(self) -> RunResult:
        t0 = time.monotonic()
        try:
            containers = await self.a.podman.labelled_containers()
        except Exception as err:
            raise RunError(str(err)) from None
        self.result.sizes["containers"] = len(containers)
        self.result.phases["list"] = time.monotonic() - t0
        await self.assemble(containers)
        self.ledger.remember(self.units)
        if self.options.update_failed_units and self.a.failed_units is not None:
            await self.assemble_failed_units()
        if self.units:
            tasks = [task for tasks in self.units.values() for task in tasks]
            if not self.options.dry_run:
                await self.connect_bus()
            if self.a.events is not None:
                # As podman: once there is something to do, before anything is checked (dry runs too).
                self.a.events.system_event("auto-update")
            await self.check(tasks)
            await self.controls.decide(self.units, platform=self.options.platform or host_platform())
            await self.controls.discover_tags(self.units)
            if self.options.dry_run:
                for task in tasks:
                    if task.prepared:
                        task.status, task.prepared = Status.PENDING, False
            else:
                t0 = time.monotonic()
                self.ledger.record_intents(self.units)
                await asyncio.gather(*(self.pull_and_update(unit, ts) for unit, ts in sorted(self.units.items())))
                self.result.phases["update"] = time.monotonic() - t0
        self.finish()
        timings.debug("run phases: %s", self.result.phase_text())
        return self.result

    async def connect_bus(self) -> None:
        """Connect before any pull: a run that could never restart must not pull either."""
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
            # The operator's filters come before the label is validated: a container left out
            # of the run cannot fail it.
            if self.excluded_container(container.name):
                continue
            try:
                policy = container_policy(container)
            except PolicyError as err:
                if not container.pod_id and self.excluded_unit(container.labels.get(UNIT_LABEL)):
                    continue
                # podman's assembleTasks appends LookupPolicy's error as it is, unwrapped.
                self.notes.error(str(err))
                continue
            if policy is None or policy is Policy.DISABLED:
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
                    self.notes.error(
                        f'auto-updating container "{container.id}": looking up pod\'s systemd unit: {found}'
                    )
                    continue
                infra_labels = found
            unit = unit_for(container, infra_labels)
            if not unit:
                self.notes.error(missing_unit_error(container))
                continue
            if self.excluded_unit(unit):
                continue
            authfile = container.labels.get(AUTHFILE_LABEL, self.options.authfile)
            self.units.setdefault(unit, []).append(Task(container, policy, unit, authfile))

    def excluded_container(self, name: str) -> bool:
        include, exclude = self.options.include_containers, self.options.exclude_containers
        return bool(include and not _matches(name, include)) or _matches(name, exclude)

    def excluded_unit(self, unit: str | None) -> bool:
        if unit is None:
            return False
        include, exclude = self.options.include_units, self.options.exclude_units
        return bool(include and not _matches(unit, include)) or _matches(unit, exclude)

    async def assemble_failed_units(self) -> None:
        """Opt-in (update_failed_units, podman issue #28925): a unit that failed or crash-loops has
        no running container, so podman never updates it, and a fixed release never reaches it.
        These units (engine/failed.py) join the run like running ones."""
        assert self.a.failed_units is not None
        try:
            found = await self.a.failed_units.find(set(self.units))
        except Exception as err:
            self.notes.warn(f"looking for failed units to update (update_failed_units): {err}")
            return
        for container in found:
            self.notes.progress(f"Unit of container {container.name} has failed: checking it for an update too")
        await self.assemble(found)

    # -- 2. check -------------------------------------------------------------------------

    async def check(self, tasks: list[Task]) -> None:
        """The registry is asked about every reference while podman lists the local images
        (the HEAD needs no local digest); each task then compares what came back.  `images` is
        the listing's time, `check` the whole step's, the listing included."""
        t0 = time.monotonic()
        listing = asyncio.ensure_future(self.a.podman.images())
        early = asyncio.ensure_future(self.prefetch(tasks))
        try:
            images = await listing
        except Exception as err:
            early.cancel()
            raise RunError(f"listing local images: {err}") from None
        self.result.phases["images"] = time.monotonic() - t0
        await early
        await asyncio.gather(*(self.check_task(task, images) for task in tasks))
        self.result.phases["check"] = time.monotonic() - t0
        self.result.sizes["images"] = len(images)
        self.result.sizes["references"] = len({task.raw_image for task in tasks if task.policy is Policy.REGISTRY})

    async def prefetch(self, tasks: list[Task]) -> None:
        """Start the registry's answer for each distinct `registry` reference.  Nothing is
        reported here: a reference that cannot be parsed, credentials that cannot be read, a
        pinned digest, are each the check's to report for its containers."""
        seen: set[tuple[str, str | None]] = set()
        for task in tasks:
            if task.policy is not Policy.REGISTRY or (task.raw_image, task.authfile) in seen:
                continue
            seen.add((task.raw_image, task.authfile))
            try:
                ref = parse_for_autoupdate(task.raw_image)
                if ref.digest is not None:
                    continue
                credentials = await self.a.credentials_for(ref, task.authfile)
            except Exception:  # noqa: S112 - the check reports it, once per container
                continue
            self.a.comparer.prefetch(ref, credentials)

    async def check_task(self, task: Task, images: dict[str, ImageInfo]) -> None:
        cid = task.container.id
        task.image = images.get(task.container.image_id)
        if task.image is None:
            self.notes.error(
                task.fail(f"internal error: no image found for ID {task.container.image_id} (container {cid})")
            )
            return
        try:
            if task.policy is Policy.REGISTRY:
                available = await self.registry_update_available(task, self.platform_for(task.container.image_id))
            else:
                available = await self.local_update_available(task, images)
        except Exception as err:
            text = f"checking image updates for container {cid}: {err}"
            if isinstance(err, AuthenticationRequired) and task.credentials is None and task.authfile:
                # A missing auth file is read as empty, as podman does (authfile.py): say which file
                # gave nothing, after podman's text.
                text += (
                    f" (the authfile {task.authfile} gave no credentials for it: is that file there, "
                    "readable by autoupdated, with an entry for this registry?)"
                )
            self.notes.error(task.fail(text))
            return
        task.prepared = available and not self.ledger.held(task)
        task.status = Status.NOT_UPDATED

    def platform_for(self, image_id: str) -> Platform | PlatformSource:
        """The platform an index is compared for: the operator's, else the local image's own
        (podman's HasDifferentDigest), inspected once per image and only when needed."""
        if self.options.platform is not None:
            return self.options.platform

        async def source() -> Platform:
            future = self._platforms.get(image_id)
            if future is None:
                future = self._platforms[image_id] = asyncio.ensure_future(self.image_platform(image_id))
            return await asyncio.shield(future)

        return source

    async def image_platform(self, image_id: str) -> Platform:
        try:
            return (await self.a.podman.image(image_id)).platform
        except Exception as err:
            platform = host_platform()
            self.notes.warn(f"inspecting image {image_id[:12]} for its platform: {err}; comparing for {platform}")
            return platform

    async def registry_update_available(self, task: Task, platform: Platform | PlatformSource) -> bool:
        assert task.image is not None
        ref = parse_for_autoupdate(task.raw_image)
        task.reference = ref
        if ref.digest is not None:
            self.notes.warn(
                f"container {task.container.name} ({task.container.id[:12]}) runs the digest-pinned image "
                f'"{task.raw_image}": a pinned image never changes, so it is not auto-updated '
                "(use a tag without @sha256:... to follow updates)"
            )
            return False
        task.credentials = await self.a.credentials_for(ref, task.authfile)
        result = await self.a.comparer.check(
            ref, credentials=task.credentials, platform=platform, local_digests=task.image.all_digests
        )
        task.new_digest = result.remote_digest
        return result.update_available

    async def local_update_available(self, task: Task, images: dict[str, ImageInfo]) -> bool:
        """The `local` policy: the image the container's name points to now, against its own."""
        assert task.image is not None
        try:
            image_id = await self.a.podman.image_id(task.raw_image)
        except (NoSuchObject, PodmanError, LookupError) as err:
            raise ReferenceError(f'looking up local image "{task.raw_image}": {err}') from None
        named = images.get(image_id) or ImageInfo(id=image_id, digest="")
        if not local_update_available(task.image, named):
            return False
        task.new_image_id, task.new_digest = image_id, named.digest
        return True

    # -- 3. pull, then update ----------------------------------------------------------------

    async def pull(self, tasks: list[Task]) -> None:
        async def pull_task(task: Task) -> None:
            if self.stop.is_set():
                self.notes.postpone(task)
                return
            try:
                task.new_image_id = await self.a.puller.pull(
                    task.raw_image, credentials=task.credentials, tls_verify=self.options.tls_verify
                )
            except Exception as err:
                self.notes.error(task.fail(f"updating image for container {task.container.id}: {err}"))

        await asyncio.gather(*(pull_task(t) for t in tasks if t.prepared and t.policy is Policy.REGISTRY))

    async def pull_and_update(self, unit: str, tasks: list[Task]) -> None:
        """A unit goes on as soon as all of its own images are pulled (never before), so restarts
        overlap the pulls of other units' images, as podman's pull-then-restart per unit does.
        A reference several units use is pulled once (the puller shares it)."""
        await self.controls.pre_update(unit, tasks)
        await self.pull(tasks)
        self.controls.hold(tasks)
        await self.updater.update(unit, tasks)
        await self.controls.after(unit, tasks)

    # -- bookkeeping ----------------------------------------------------------------------

    def finish(self) -> None:
        for unit in sorted(self.units):
            for task in self.units[unit]:
                entry = task.entry()
                self.result.entries.append(entry)
                if self.a.journal is not None:
                    self.a.journal.outcome(entry)
        self.result.pulled = list(self.a.puller.pulled)
        self.result.finished = time.time()


async def run(options: Options, *, adapters: Adapters, stop: asyncio.Event | None = None) -> RunResult:
    """One run of the update job over `adapters` (closed afterwards).  Raises RunError only when
    podman or D-Bus is unreachable."""
    try:
        return await Engine(options, adapters, stop).run()
    finally:
        await adapters.aclose()
