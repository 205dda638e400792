"""The one module that builds the real adapters and hands them to the engine.

Everything above it (the CLI, the daemon) asks for a run, a recovery or a rollback here and
never builds an adapter itself; everything below it (the engine, the parts) sees only ports.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

from autoupdated.adapters.controlstore import ControlStore
from autoupdated.adapters.history import History
from autoupdated.adapters.hooks import HookRunner
from autoupdated.adapters.journal import Journal, PodmanEvents
from autoupdated.adapters.podman import Podman, default_url
from autoupdated.adapters.registry.authfile import CredentialsLookup
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.hosts import HostFacts as HostFacts  # the daemon keeps one across runs
from autoupdated.adapters.systemd.bus import SystemdBus
from autoupdated.controls.model import Waiting
from autoupdated.engine.failed import FailedUnits
from autoupdated.engine.options import Options
from autoupdated.engine.ports import Adapters
from autoupdated.engine.recovery import recover as recover_with
from autoupdated.engine.rollback import roll_back as roll_back_with
from autoupdated.engine.run import run as run_with
from autoupdated.errors import HistoryError, RunError
from autoupdated.model import PruneReport, RunResult
from autoupdated.parts.digest import DigestComparer
from autoupdated.parts.puller import Puller
from autoupdated.parts.restarter import UnitRestarter


def real_adapters(options: Options, history: History | None = None, facts: HostFacts | None = None) -> Adapters:
    """The adapters that talk to the real podman, registries, systemd and journal.  `facts`:
    what earlier runs of this process learned of each registry (its scheme and challenge)."""
    podman = Podman(options.podman_url)
    client = RegistryClient(
        tls_verify=options.tls_verify,
        per_registry_concurrency=options.check_concurrency,
        timeout=options.registry_timeout,
        facts=facts,
    )
    bus = SystemdBus(options.bus)
    closers: list[Callable[[], Awaitable[None]]] = [client.aclose, bus.close]
    failed_units = None
    if options.update_failed_units:
        failed_units = FailedUnits(podman, history, bus)
    store = None
    if history is not None:
        closers.append(history.aclose)
        store = _control_store(history.path)
        closers.append(store.aclose)
    return Adapters(
        podman=podman,
        comparer=DigestComparer(client),
        puller=Puller(podman, options.pull_concurrency),
        restarter=UnitRestarter(bus, timeout=options.restart_timeout),
        credentials_for=CredentialsLookup(),
        journal=Journal(),
        history=history,
        failed_units=failed_units,
        units=bus,
        hooks=HookRunner(),
        control_store=store,
        tags=client,
        image_age=client,
        events=PodmanEvents(),
        closers=closers,
    )


def _control_store(path: Path) -> ControlStore:
    try:
        return ControlStore(path)
    except HistoryError as err:
        raise RunError(f"{err}; no update is made without its record") from None


def _history(path: str | Path, action: str = "update") -> History:
    try:
        return History(path, action=action)
    except HistoryError as err:
        raise RunError(f"{err}; no update is made without its record") from None


async def run(options: Options, *, stop: asyncio.Event | None = None, facts: HostFacts | None = None) -> RunResult:
    """One run of the update job against the real podman, registries and systemd.  A
    long-lived caller passes the same `facts` to every run (see adapters/registry/hosts.py)."""
    history = _history(options.history_path) if options.history_path else None
    return await run_with(options, adapters=real_adapters(options, history, facts), stop=stop)


async def recover(options: Options, *, stop: asyncio.Event | None = None) -> RunResult:
    """Finish the interrupted updates the history holds (nothing without a history)."""
    if not options.history_path:
        result = RunResult()
        result.finished = result.started
        return result
    plain = dataclasses.replace(options, history_path=None, update_failed_units=False, dry_run=False)
    history = _history(options.history_path, action="recovery")
    try:
        return await recover_with(plain, real_adapters(plain), history)
    finally:
        history.close()


async def roll_back(options: Options, path: Path, container: str) -> str:
    """`autoupdated rollback CONTAINER` against the real podman and systemd."""
    plain = dataclasses.replace(options, history_path=None, update_failed_units=False)
    with History(path, action="rollback") as history:
        return await roll_back_with(plain, real_adapters(plain), history, container)


def pending_recovery(path: Path | None) -> int:
    """How many unit updates the history at `path` holds as 'in progress' (0 without one)."""
    if path is None or not path.exists():
        return 0
    with History(path, readonly=True) as history:
        return len(history.pending())


def podman_url(url: str | None) -> str:
    """The podman service a run talks to: the key, $CONTAINER_HOST, else the usual socket."""
    return url or default_url()


def prune_dangling_images(url: str) -> PruneReport:
    """`podman image prune -f` (dangling images only); blocking (the daemon runs it in a thread)."""
    return asyncio.run(Podman(url).prune_images())


def held_updates(path: Path | None) -> list[Waiting]:
    """What the operator controls hold (status, approvals); nothing without a history."""
    if path is None or not path.exists():
        return []
    store = ControlStore(path)
    try:
        return store.held()
    finally:
        store.close()


def new_tags(path: Path | None) -> list[dict[str, object]]:
    """Newer tags found for containers that track them (track_tags)."""
    if path is None or not path.exists():
        return []
    store = ControlStore(path)
    try:
        return store.newer_tags()
    finally:
        store.close()


def record_approval(path: Path, entries: tuple[Waiting, ...]) -> None:
    store = ControlStore(path)
    try:
        for entry in entries:
            store.approve(entry.container, entry.digest)
    finally:
        store.close()
