"""The one module that builds the real adapters: podman, registries, systemd, journal, history."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from autoupdated import engine
from autoupdated.adapters.journal import Journal
from autoupdated.engine import Adapters, Options, RunError, RunResult


def real_adapters(options: Options) -> Adapters:
    """Build the adapters that talk to the real podman, registries, systemd and journal."""
    from autoupdated.adapters.podman import Podman
    from autoupdated.adapters.registry.authfile import credentials_for
    from autoupdated.adapters.registry.client import RegistryClient
    from autoupdated.parts.digest import DigestComparer
    from autoupdated.parts.puller import Puller
    from autoupdated.parts.restarter import UnitRestarter

    podman = Podman(options.podman_url)
    client = RegistryClient(
        tls_verify=options.tls_verify,
        per_registry_concurrency=options.check_concurrency,
        timeout=options.registry_timeout,
    )
    restarter = UnitRestarter(options.bus, timeout=options.restart_timeout)
    history = None
    if options.history_path:
        from autoupdated.adapters.history import History, HistoryError

        try:
            history = History(options.history_path)
        except HistoryError as err:
            raise RunError(f"{err}; no update is made without its record") from None
    closers: list[Callable[[], Awaitable[None]]] = [client.aclose, restarter.close]
    failed_units = None
    if options.update_failed_units:
        from autoupdated.engine.recovery import FailedUnits

        failed_units = FailedUnits(podman, history, options.bus)
        closers.append(failed_units.aclose)
    if history is not None:
        closers.append(history.aclose)
    return Adapters(
        podman=podman,
        comparer=DigestComparer(client),
        puller=Puller(podman, options.pull_concurrency),
        restarter=restarter,
        credentials_for=credentials_for,
        journal=Journal(),
        history=history,
        failed_units=failed_units,
        closers=closers,
    )


async def run(options: Options, *, stop: asyncio.Event | None = None) -> RunResult:
    """One run of the update job against the real podman, registries and systemd."""
    return await engine.run(options, adapters=real_adapters(options), stop=stop)
