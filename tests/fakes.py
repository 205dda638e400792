"""In-memory stand-ins for the engine's adapters, for fault injection.

Each fake records what it was asked so tests can assert order, counts and
concurrency.  Real-component tests live in the test_machine_* files.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from autoupdated import engine
from autoupdated.controls.model import Hook, HookResult, HookRun, Waiting
from autoupdated.model import (
    CheckResult,
    ContainerInfo,
    ContainerState,
    Credentials,
    ImageInfo,
    Platform,
    PlatformSource,
)
from autoupdated.reference import Reference


def cid(n: int) -> str:
    return f"{n:02d}" * 32


def container(
    n: int,
    image: str,
    *,
    policy: str | None = "registry",
    unit: str | None = "auto",
    image_id: str = "old",
    pod: str = "",
    labels: dict[str, str] | None = None,
) -> ContainerInfo:
    all_labels = dict(labels or {})
    if policy is not None:
        all_labels["io.containers.autoupdate"] = policy
    if unit == "auto":
        unit = f"container-c{n}.service"
    if unit is not None:
        all_labels["PODMAN_SYSTEMD_UNIT"] = unit
    return ContainerInfo(
        id=cid(n), name=f"c{n}", image_id=image_id, raw_image_name=image, labels=all_labels, pod_id=pod
    )


@dataclass
class FakePodman:
    """Containers, images and names; `recreate` is what a unit restart does to its containers."""

    containers: list[ContainerInfo]
    images_by_id: dict[str, ImageInfo] = field(default_factory=dict)
    inspected: list[str] = field(default_factory=list)
    local_names: dict[str, str] = field(default_factory=dict)
    infra: dict[str, dict[str, str]] = field(default_factory=dict)
    tags: list[tuple[str, str]] = field(default_factory=list)
    fail_list: Exception | None = None
    # images whose containers exit this many seconds after their start (0: never come up), and
    # healthchecks by image; `polls` counts container_state calls (what the gate costs podman)
    crashing: dict[str, float] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    running: dict[str, ContainerState] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def recreate(self, unit: str) -> None:
        for c in self.containers:
            own = self.infra.get(c.pod_id, {}).get("PODMAN_SYSTEMD_UNIT") if c.pod_id else None
            if (own or c.labels.get("PODMAN_SYSTEMD_UNIT")) != unit:
                continue
            image_id = self.local_names.get(c.raw_image_name, c.image_id)
            self.running[c.name] = ContainerState(
                id=f"new{next(self._ids)}",
                image_id=image_id,
                status="running",
                running=True,
                exit_code=0,
                started_at="now",
                health="",
                has_healthcheck=image_id in self.health,
            )
            self.started[c.name] = time.monotonic()
            self.polls[c.name] = 0

    async def container_state(self, name: str) -> ContainerState | None:
        state = self.running.get(name)
        if state is None:
            c = next(c for c in self.containers if c.name == name)
            return ContainerState(c.id, c.image_id, "running", True, 0, "before", "", False)
        self.polls[name] = self.polls.get(name, 0) + 1
        after = self.crashing.get(state.image_id)
        if after is not None and time.monotonic() - self.started.setdefault(name, time.monotonic()) >= after:
            return None if after else ContainerState(state.id, state.image_id, "exited", False, 1, "now", "", False)
        return state

    async def run_healthcheck(self, name: str) -> str:
        return self.health.get(self.running[name].image_id, "")

    async def labelled_containers(self) -> list[ContainerInfo]:
        if self.fail_list:
            raise self.fail_list
        return list(self.containers)

    async def pod_infra_labels(self, pod_id: str) -> dict[str, str]:
        return self.infra[pod_id]

    async def images(self) -> dict[str, ImageInfo]:
        return dict(self.images_by_id)

    async def image(self, name_or_id: str) -> ImageInfo:
        self.inspected.append(name_or_id)
        return self.images_by_id[name_or_id]

    async def image_id(self, name: str) -> str:
        if name not in self.local_names:
            raise LookupError(f"{name}: image not known")
        return self.local_names[name]

    async def tag(self, image_id: str, name: str) -> None:
        self.tags.append((image_id, name))
        self.local_names[name] = image_id


@dataclass
class FakeComparer:
    remote: dict[str, str]  # reference -> remote digest
    errors: dict[str, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # References whose remote is an index: the platform is resolved and recorded for them.
    indexes: set[str] = field(default_factory=set)
    platforms: dict[str, Platform] = field(default_factory=dict)
    prefetched: list[str] = field(default_factory=list)

    def prefetch(self, ref: Reference, credentials: Credentials | None) -> None:
        self.prefetched.append(str(ref))

    async def check(
        self,
        ref: Reference,
        *,
        credentials: Credentials | None,
        platform: Platform | PlatformSource,
        local_digests: frozenset[str],
    ) -> CheckResult:
        self.calls.append(str(ref))
        await asyncio.sleep(0)
        if str(ref) in self.errors:
            raise self.errors[str(ref)]
        if str(ref) in self.indexes:
            self.platforms[str(ref)] = platform if isinstance(platform, Platform) else await platform()
        digest = self.remote[str(ref)]
        return CheckResult(digest not in local_digests, digest)


@dataclass
class FakePuller:
    new_ids: dict[str, str]
    podman: FakePodman | None = None
    errors: dict[str, Exception] = field(default_factory=dict)
    pulled: list[str] = field(default_factory=list)
    done_at: dict[str, float] = field(default_factory=dict)
    delay: float = 0.0
    delays: dict[str, float] = field(default_factory=dict)  # reference -> its own pull time

    async def pull(self, reference: str, *, credentials: Credentials | None, tls_verify: bool | None) -> str:
        await asyncio.sleep(self.delays.get(reference, self.delay))
        if reference in self.errors:
            raise self.errors[reference]
        if reference not in self.pulled:
            self.pulled.append(reference)
        if self.podman is not None:
            self.podman.local_names[reference] = self.new_ids[reference]
        self.done_at[reference] = asyncio.get_running_loop().time()
        return self.new_ids[reference]


@dataclass
class FakeRestarter:
    """Fails a unit's restart while `fail` says so; tracks concurrency and order."""

    fail: dict[str, int] = field(default_factory=dict)  # unit -> how many restarts fail
    delay: float = 0.0
    restarts: list[str] = field(default_factory=list)
    started_at: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    connected: bool = False
    connect_error: Exception | None = None
    podman: FakePodman | None = None

    async def connect(self) -> None:
        if self.connect_error:
            raise self.connect_error
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def restart(self, unit: str) -> None:
        self.restarts.append(unit)
        self.started_at.setdefault(unit, asyncio.get_running_loop().time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail.get(unit, 0) > 0:
            self.fail[unit] -= 1
            raise RuntimeError(f'error restarting systemd unit "{unit}" expected "done" but received "failed"')
        if self.podman is not None:
            self.podman.recreate(unit)


def adapters(
    podman: FakePodman,
    comparer: FakeComparer | None = None,
    puller: FakePuller | None = None,
    restarter: FakeRestarter | None = None,
    credentials: dict[str, Credentials] | None = None,
) -> engine.Adapters:
    creds = credentials or {}

    async def credentials_for(ref: Reference, authfile: str | None) -> Credentials | None:
        return creds.get(authfile or "")

    return engine.Adapters(
        podman=podman,
        comparer=comparer or FakeComparer({}),
        puller=puller or FakePuller({}),
        restarter=restarter or FakeRestarter(),
        credentials_for=credentials_for,
        journal=None,
    )


def image(image_id: str, digest: str) -> ImageInfo:
    return ImageInfo(id=image_id, digest=digest, repo_digests=(f"x@{digest}",))


@dataclass
class FakeHooks:
    """Hook runs by name: each returns `results[name]` (exit 0 by default); `runs` records (name, env)."""

    results: dict[str, HookResult] = field(default_factory=dict)
    runs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    order: list[str] | None = None  # shared with other fakes to prove ordering

    async def run(self, hook: Hook, env: dict[str, str]) -> HookResult:
        self.runs.append((hook.name, env))
        if self.order is not None:
            self.order.append(f"hook:{hook.name}")
        return self.results.get(hook.name, HookResult(0, f"{hook.name} ok\n"))


@dataclass
class FakeControlStore:
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    approvals: dict[str, str] = field(default_factory=dict)
    held: dict[str, Waiting] = field(default_factory=dict)
    tag_lists: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    news: dict[str, list[str]] = field(default_factory=dict)
    hook_runs: list[HookRun] = field(default_factory=list)

    def first_seen(self, reference: str, digest: str, now: float) -> float:
        return self.seen.setdefault((reference, digest), now)

    def approved(self, container: str) -> str | None:
        return self.approvals.get(container)

    def waiting(self, entry: Waiting) -> None:
        self.held[entry.container] = entry

    def done(self, container: str) -> None:
        self.held.pop(container, None)
        self.approvals.pop(container, None)

    def tags_listed(self, repository: str) -> tuple[float, list[str]] | None:
        return self.tag_lists.get(repository)

    def remember_tags(self, repository: str, tags: list[str], now: float) -> None:
        self.tag_lists[repository] = (now, list(tags))

    def new_tags(self, container: str, image: str, newer: list[str]) -> None:
        self.news[container] = list(newer)

    def hook_ran(self, run: HookRun) -> None:
        self.hook_runs.append(run)


@dataclass
class FakeTags:
    """A registry's tag lists by repository name; `asked` counts the listings."""

    tags: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    error: Exception | None = None

    async def list_tags(self, ref: Reference, credentials: Credentials | None) -> list[str]:
        self.asked.append(ref.name)
        if self.error is not None:
            raise self.error
        return self.tags.get(ref.name, [])
