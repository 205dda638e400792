"""`autoupdated run`: the long-running service systemd starts.

One asyncio loop does everything, so an idle daemon sleeps until the next scheduled run (one
APScheduler timer, daemon/schedule.py) or the next watchdog ping; nothing polls.  Runs never
overlap (daemon/runs.py).

Signals: SIGHUP re-reads the configuration (a bad one is rejected and the old one stays whole),
SIGTERM and SIGINT stop (no new pull or restart starts; restarts under way are awaited, bounded
by `stop_timeout`), SIGUSR1 asks for a run like `autoupdated trigger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from autoupdated import config as config_mod
from autoupdated import wiring
from autoupdated.adapters import journal as journal_mod
from autoupdated.adapters.control import ControlError, ControlServer
from autoupdated.adapters.notify import Notifier
from autoupdated.adapters.state import StateDir
from autoupdated.daemon import runs as runs_mod
from autoupdated.daemon.held import Held
from autoupdated.daemon.logs import DaemonLog, setup_logging
from autoupdated.daemon.notifications import Notifications
from autoupdated.daemon.runs import OptionsFactory, Pruner, RunFunc, Runs
from autoupdated.daemon.schedule import Schedule
from autoupdated.daemon.status import fmt_time, iso, local_timezone, status_line
from autoupdated.daemon.telemetry import Telemetry
from autoupdated.engine import Options

# Patched by tests that stand in for the engine; looked up when a run starts.
_engine_run: RunFunc = runs_mod.engine_run
_recovery_run: RunFunc = runs_mod.recovery_run


def engine_options(settings: config_mod.Settings) -> Options:
    """The engine's Options for one run, from the configuration in force when the run starts."""
    history = config_mod.history_path(settings)
    return Options.from_settings(settings, str(history) if history is not None else None)


class Daemon:
    """The service: scheduler, control socket, signals, sd_notify, and the run coordinator."""

    def __init__(
        self,
        loaded: config_mod.LoadedConfig,
        *,
        run_func: RunFunc | None = None,
        options_factory: OptionsFactory | None = None,
        notifier: Notifier | None = None,
        journal: journal_mod.Journal | None = None,
        pruner: Pruner | None = None,
        install_signals: bool = True,
        manage_logging: bool = True,
    ) -> None:
        self.loaded = loaded
        self.config_path = loaded.path
        self.notifier = notifier if notifier is not None else Notifier.from_environment()
        self.journal = journal if journal is not None else journal_mod.Journal()
        self.install_signals = install_signals
        self.manage_logging = manage_logging
        self.tz = local_timezone()
        self.state = StateDir(config_mod.state_dir(loaded.settings))
        self.socket_path = config_mod.control_socket(loaded.settings)
        self.started_at = datetime.now(UTC)
        self.log = DaemonLog(self.journal, lambda: self.settings.log_level)
        self._own_engine = run_func is None
        history = lambda: config_mod.history_path(self.settings)  # noqa: E731
        self.telemetry = Telemetry(self.log, self.status, history, self._next_run_timestamp)
        self.notifications = Notifications(self.log, history, self.telemetry.metrics.notification)
        self.notifications.configure(loaded.settings)
        self.schedule = Schedule(self.state, self.tz, self.log, self._fire, lambda: self._stopping.is_set())
        self.runs = Runs(
            settings=lambda: self.settings,
            run_func=run_func or (lambda options, *, stop=None: _engine_run(options, stop=stop)),
            recovery_func=lambda: _recovery_run,
            options_factory=options_factory or engine_options,
            pruner=pruner or wiring.prune_dangling_images,
            state=self.state,
            log=self.log,
            on_change=self._status_changed,
            next_run=lambda: iso(self.next_run_time()),
            on_recorded=self._recorded,
        )
        self._stopping = asyncio.Event()
        self._control: ControlServer | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.held = Held(lambda: config_mod.history_path(self.settings), self.request_run, self.wait_for_run, self.log)

    @property
    def settings(self) -> config_mod.Settings:
        return self.loaded.settings

    @property
    def engine_stop(self) -> asyncio.Event:
        return self.runs.engine_stop

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.runs.last

    @property
    def runs_completed(self) -> int:
        return self.runs.completed

    def next_run_time(self) -> datetime | None:
        return self.schedule.next_run_time()

    def request_run(self, reason: str) -> tuple[str, int]:
        return self.runs.request(reason)

    async def wait_for_run(self, number: int) -> dict[str, Any]:
        return await self.runs.wait_for(number)

    # -- life cycle ----------------------------------------------------------------------------

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or `stop()`); 0 after a clean stop."""
        loop = asyncio.get_running_loop()
        if self.manage_logging:
            setup_logging(self.settings.log_level, self.journal)
        if self.install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload_soon)
            loop.add_signal_handler(signal.SIGUSR1, self._signal_trigger)
        try:
            try:
                self.state.ensure()
                self._control = ControlServer(self.socket_path, self.handle_request)
                await self._control.start()
            except (OSError, ControlError) as err:
                text = getattr(err, "strerror", None) or str(err)
                self.log(
                    journal_mod.ERR,
                    f"cannot start: control socket {self.socket_path} or state directory {self.state.path}: {text}",
                )
                self._control = None
                return 1
            await self.telemetry.apply(self.settings)
            self.schedule.start(config_mod.schedule_trigger(self.settings, self.tz))
            catch_up_due = self.schedule.missed_run(self.settings)
            self.notifier.ready(self.status_line())
            self.log(
                journal_mod.INFO,
                f"Started (pid {os.getpid()}); configuration {self._config_origin()}; schedule "
                f"{self.settings.schedule!r}; next run {fmt_time(self.next_run_time(), self.tz)}",
                CONFIG_FILE=str(self.config_path),
            )
            self._log_warnings(self.loaded)
            self.notifications.daemon_event("started", f"Started; next run {fmt_time(self.next_run_time(), self.tz)}")
            self._arm_watchdog()
            if self.settings.run_on_start:
                if catch_up_due is not None:
                    self.state.touch_stamp()
                self.request_run("start" if catch_up_due is None else "start, catch-up")
            elif catch_up_due is not None:
                self.schedule.catch_up(catch_up_due, self.settings.randomized_delay)
                self.notifier.status(self.status_line())
            self._start_recovery()
            await self._stopping.wait()
            await self._shutdown()
            return 0
        finally:
            if self.install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                    loop.remove_signal_handler(sig)
            if self._watchdog is not None:
                self._watchdog.cancel()
            self.held.cancel()
            self.notifier.close()
            self.journal.close()

    def _start_recovery(self) -> None:
        if not self._own_engine or self.settings.dry_run:
            return  # tests with their own run function; a monitor-only daemon changes nothing
        try:
            count = wiring.pending_recovery(config_mod.history_path(self.settings))
        except Exception as err:
            self.log(journal_mod.ERR, f"Reading the history for interrupted updates failed: {err}")
            count = 1  # the recovery run reports the problem and the next start tries again
        if count:
            self.runs.start_recovery(count)

    def stop(self) -> None:
        """SIGTERM: stop starting things, let started restarts finish, then exit."""
        if self._stopping.is_set():
            return
        self.engine_stop.set()
        self.notifier.stopping(
            "Stopping: waiting for the run in progress to finish its restarts" if self.runs.running else "Stopping"
        )
        self._stopping.set()

    async def _shutdown(self) -> None:
        self.schedule.shutdown()
        await self.runs.drain(self.settings.stop_timeout)
        if self._control is not None:
            await self._control.close()
        self.notifications.daemon_event("stopping")
        await self.notifications.drain(self.notifications.deadline)
        await self.telemetry.close()
        for pending in list(self._background):
            pending.cancel()
        self.log(journal_mod.INFO, "Stopped")

    def _status_changed(self) -> None:
        self.notifier.status(self.status_line())
        if self.runs.current is None and not self._stopping.is_set():
            self.held.rearm()  # a run finished: wake up when the first held update is due

    def _recorded(self, run: dict[str, Any]) -> None:
        self.telemetry.after_run(run)
        self.notifications.after_run(run)

    def _next_run_timestamp(self) -> float | None:
        moment = self.next_run_time()
        return moment.timestamp() if moment is not None else None

    def _fire(self, reason: str) -> None:
        self.request_run(reason)

    def _signal_trigger(self) -> None:
        with contextlib.suppress(ControlError):
            self.request_run("signal")

    # -- reload --------------------------------------------------------------------------------

    def reload_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> bool:
        """SIGHUP: re-read the configuration.  Every step that can fail runs before anything
        changes, so a rejected configuration leaves the one in force whole."""
        async with self._reload_lock:
            if self._stopping.is_set():
                return False
            self.notifier.reloading()
            try:
                new = config_mod.load(self.config_path)
                changed = [key for key in config_mod.KEYS if getattr(self.settings, key) != getattr(new.settings, key)]
                if {"schedule", "randomized_delay"} & set(changed):
                    self.schedule.use(config_mod.schedule_trigger(new.settings, self.tz))
            except Exception as err:  # ConfigError, or a schedule that cannot be put in force
                return self._reject(err)
            self.loaded = new
            self.notifications.configure(new.settings)
            await self.telemetry.apply(new.settings)
            self._log_warnings(new)
            if "log_level" in changed and self.manage_logging:
                setup_logging(new.settings.log_level, self.journal)
            for key in ("state_dir", "control_socket"):
                if key in changed:
                    self.log(
                        journal_mod.WARNING,
                        f"{key} changed in {self.config_path}: it takes effect "
                        "when the daemon restarts (`systemctl restart autoupdated`)",
                    )
            self.log(
                journal_mod.INFO,
                f"Configuration reloaded from {self._config_origin()}; changed: "
                f"{', '.join(changed) or 'nothing'}; next run {fmt_time(self.next_run_time(), self.tz)}",
                message_id=journal_mod.MESSAGE_ID_CONFIG,
                CONFIG_FILE=str(self.config_path),
                RESULT="reloaded",
                CHANGED=",".join(changed),
            )
            self.notifier.ready(self.status_line())
            return True

    def _reject(self, err: Exception) -> bool:
        text = str(err) if isinstance(err, config_mod.ConfigError) else f"{type(err).__name__}: {err}"
        self.log(
            journal_mod.ERR,
            f"Reload rejected, the configuration in force stays unchanged: {text}",
            message_id=journal_mod.MESSAGE_ID_CONFIG,
            CONFIG_FILE=str(self.config_path),
            RESULT="rejected",
        )
        self.notifier.ready(self.status_line(note="last reload rejected, see the journal"))
        self.notifications.daemon_event("configuration rejected", f"Reload rejected: {text}")
        return False

    def _log_warnings(self, loaded: config_mod.LoadedConfig) -> None:
        for warning in loaded.warnings:
            self.log(
                journal_mod.WARNING,
                f"Configuration: {warning}",
                message_id=journal_mod.MESSAGE_ID_CONFIG,
                CONFIG_FILE=str(self.config_path),
                RESULT="warning",
            )

    def _config_origin(self) -> str:
        return str(self.config_path) if self.loaded.file_found else f"{self.config_path} (not found: defaults)"

    # -- watchdog, status, control requests --------------------------------------------------

    def _arm_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return

        def tick() -> None:
            self.notifier.watchdog()
            self._watchdog = asyncio.get_running_loop().call_later(interval, tick)

        tick()

    def status_line(self, note: str | None = None) -> str:
        """The STATUS= text: state, next run, last run's summary (one line, for `systemctl status`)."""
        return status_line(self.runs.current, self.runs.last, self.next_run_time(), self.tz, note)

    def status(self) -> dict[str, Any]:
        daemon = {
            "pid": os.getpid(),
            "started": self.started_at.isoformat(),
            "config": str(self.config_path),
            "schedule": self.settings.schedule,
            "randomized_delay": self.settings.randomized_delay,
            "dry_run": self.settings.dry_run,
            "state": "running" if self.runs.current is not None else "idle",
            "runs_completed": self.runs.completed,
        }
        last_run = self.runs.last if self.runs.last is not None else self.state.read_last_run()
        return {
            "ok": True,
            "daemon": daemon,
            "current_run": self.runs.current.as_dict() if self.runs.current is not None else None,
            "queued_run": self.runs.queued[0] if self.runs.queued else None,
            "next_run": iso(self.next_run_time()),
            "last_run": last_run,
            "updates_waiting": [
                e.get("container_name") for e in (last_run or {}).get("entries", []) if e.get("updated") == "pending"
            ],
            "status_line": self.status_line(),
            "held": self.held.status(),
            "held_wakeup": iso(self.held.wakeup),
            "new_tags": self.held.new_tags(),
        }

    async def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "status":
            return self.status()
        if command == "trigger":
            try:
                accepted, number = self.request_run(str(request.get("reason") or "trigger"))
            except ControlError as err:
                return {"ok": False, "error": str(err)}
            reply: dict[str, Any] = {"ok": True, "accepted": accepted, "run": number}
            if request.get("wait"):
                reply["result"] = await self.wait_for_run(number)
            return reply
        if command == "approve":
            return await self.held.approve(request)
        return {"ok": False, "error": f"unknown command {command!r} (known: status, trigger, approve)"}


def main(config_path: str | None) -> int:
    """`autoupdated run`: load the configuration (exit 78 when it is wrong), then serve."""
    try:
        loaded = config_mod.load(config_path)
    except config_mod.ConfigError as err:
        print(f"autoupdated: {err}", file=sys.stderr)
        return config_mod.EX_CONFIG

    async def serve() -> int:
        return await Daemon(loaded).serve()

    return asyncio.run(serve())
