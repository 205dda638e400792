"""A run's options, and how the daemon's configuration maps onto them (in one place)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autoupdated.controls.model import ControlsConfig
from autoupdated.model import Platform

if TYPE_CHECKING:  # pydantic is not loaded for `autoupdated check`
    from autoupdated.config import Settings


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
    history_path: str | None = None  # the history database (adapters/history.py); None: no history
    update_failed_units: bool = False  # also update units that failed or crash-loop (podman #28925)
    controls: ControlsConfig = field(default_factory=ControlsConfig)  # docs/controls.md
    ignore_windows: bool = False  # `check --ignore-windows`

    @classmethod
    def from_settings(cls, settings: Settings, history_path: str | None) -> Options:
        """The options of one daemon run, from the configuration in force when the run starts."""
        return cls(
            history_path=history_path,
            registry_timeout=settings.registry_timeout,
            update_failed_units=settings.update_failed_units,
            dry_run=settings.dry_run,
            rollback=settings.rollback,
            authfile=settings.authfile,
            tls_verify=settings.tls_verify,
            podman_url=settings.podman_url,
            bus=None if settings.bus == "auto" else settings.bus,
            check_concurrency=settings.check_concurrency,
            pull_concurrency=settings.pull_concurrency,
            restart_concurrency=settings.restart_concurrency,
            restart_timeout=settings.restart_timeout,
            health_gate=settings.health_gate,
            settle_time=settings.settle_time,
            health_timeout=settings.health_timeout,
            include_containers=tuple(settings.include_containers),
            exclude_containers=tuple(settings.exclude_containers),
            include_units=tuple(settings.include_units),
            exclude_units=tuple(settings.exclude_units),
            controls=settings.controls_config,
        )
