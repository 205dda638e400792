"""`autoupdated run`: the long-running service systemd starts.

One asyncio loop does everything, so an idle daemon sleeps until the next scheduled run (one
APScheduler timer) or the next watchdog ping; nothing polls.

Runs never overlap.  All of them (scheduled, catch-up, run-on-start, `autoupdated trigger`,
SIGUSR1) go through `request_run`: with no run in progress one starts; during a run the request
is queued, and every request that arrives during that run is merged into the single run that
follows it.  The APScheduler job only asks for a run and returns, with `max_instances=1` and
`coalesce=True` so a late or backed-up timer never fires twice.

Signals: SIGHUP re-reads the configuration (a bad one is rejected and the old one stays), SIGTERM
and SIGINT stop (no new pull or restart starts; restarts under way are awaited, bounded by
`stop_timeout`), SIGUSR1 asks for a run like `autoupdated trigger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from autoupdated import config as config_mod
from autoupdated.adapters import journal as journal_mod
from autoupdated.adapters.control import ControlError, ControlServer
from autoupdated.adapters.notify import Notifier
from autoupdated.adapters.state import StateDir

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

RunFunc = Callable[..., Awaitable[Any]]
OptionsFactory = Callable[[config_mod.Settings], Any]
Pruner = Callable[[str], Mapping[str, Any]]

LEVELS = {
    "debug": journal_mod.DEBUG,
    "info": journal_mod.INFO,
    "notice": journal_mod.NOTICE,
    "warning": journal_mod.WARNING,
    "error": journal_mod.ERR,
}
_LEVEL_NAMES = {
    journal_mod.ERR: "error",
    journal_mod.WARNING: "warning",
    journal_mod.NOTICE: "notice",
    journal_mod.INFO: "info",
    journal_mod.DEBUG: "debug",
}
SCHEDULED_JOB = "scheduled-run"
RECOVERY_REASON = "recovery"
CATCH_UP_JOB = "catch-up-run"


def engine_options(settings: config_mod.Settings) -> Any:
    """The engine's Options for one run, from the configuration in force when the run starts."""
    from autoupdated import engine

    history = config_mod.history_path(settings)
    return engine.Options(
        history_path=str(history) if history is not None else None,
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
    )


async def _engine_run(options: Any, *, stop: asyncio.Event | None = None) -> Any:
    """One run; an update a dead daemon (or a cancelled run) left half done is finished first."""
    from autoupdated import wiring
    from autoupdated.engine import recovery

    recovered = await recovery.recover(options) if options.history_path and not options.dry_run else None
    result = await wiring.run(options, stop=stop)
    if recovered is not None and recovered.entries:
        result.errors[:0] = recovered.errors
        result.warnings[:0] = [f"finished an interrupted update: {text}" for text in recovered.warnings]
    return result


async def _recovery_run(options: Any, *, stop: asyncio.Event | None = None) -> Any:
    """The run at start-up when the history holds unfinished updates: only finish them."""
    from autoupdated.engine import recovery

    return await recovery.recover(options)


def pending_recovery(settings: config_mod.Settings) -> int:
    """How many unit updates the history holds as 'in progress' (0 without a history)."""
    path = config_mod.history_path(settings)
    if path is None or not path.exists():
        return 0
    from autoupdated.adapters.history import History

    with History(path, readonly=True) as history:
        return len(history.pending())


def podman_url(settings: config_mod.Settings) -> str:
    """The podman service the run talks to: the key, $CONTAINER_HOST, else the usual socket."""
    if settings.podman_url:
        return settings.podman_url
    from autoupdated.adapters.podman import default_url

    return default_url()


def prune_dangling_images(url: str) -> Mapping[str, Any]:
    """`podman image prune -f` (dangling images only) through the REST API; blocking."""
    from podman import PodmanClient

    with PodmanClient(base_url=url) as client:
        result = client.images.prune()
        return {str(key): value for key, value in result.items()}


def release_memory() -> None:
    """After a run the daemon sleeps until the next one: give the heap the run grew back to the
    system.  glibc keeps freed memory for reuse otherwise (about 7 MB after a run over 60
    containers, most of what an idle daemon holds beyond its modules).  No-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


_PYTHON_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": 25,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JournalHandler(logging.Handler):
    """Python logging (the engine's errors and progress, APScheduler's warnings) into the journal.

    Without it they would reach the journal twice or as unstructured stderr lines at the wrong
    priority.
    """

    def __init__(self, journal: journal_mod.Journal) -> None:
        super().__init__()
        self.journal = journal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                priority = journal_mod.ERR
            elif record.levelno >= logging.WARNING:
                priority = journal_mod.WARNING
            elif record.levelno > logging.INFO:
                priority = journal_mod.NOTICE
            elif record.levelno >= logging.INFO:
                priority = journal_mod.INFO
            else:
                priority = journal_mod.DEBUG
            if not self.journal.send(message, priority=priority, fields={"LOGGER": record.name}):
                print(
                    f"autoupdated: {logging.getLevelName(record.levelno).lower()}: {message}",
                    file=sys.stderr,
                    flush=True,
                )
        except Exception:
            self.handleError(record)


def setup_logging(level: str, journal: journal_mod.Journal) -> None:
    """Route the `autoupdated` and `apscheduler` loggers to the journal at `log_level`."""
    handler = JournalHandler(journal)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name, logger_level in (
        ("autoupdated", _PYTHON_LEVELS[level]),
        ("apscheduler", logging.DEBUG if level == "debug" else logging.WARNING),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logger_level)
    logging.getLogger("autoupdated.progress").setLevel(logging.NOTSET)


def _local_timezone() -> tzinfo:
    from tzlocal import get_localzone

    try:
        return get_localzone()
    except Exception:
        return UTC


def _fmt_time(moment: datetime | None, tz: tzinfo) -> str:
    if moment is None:
        return "none"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _entry_record(entry: Any) -> dict[str, Any]:
    """One engine.Entry as plain JSON data (the status file and socket carry these)."""
    names = (
        "unit",
        "container_id",
        "container_name",
        "image",
        "policy",
        "updated",
        "old_digest",
        "new_digest",
        "old_image_id",
        "new_image_id",
        "error",
    )
    record: dict[str, Any] = {}
    for name in names:
        value = getattr(entry, name, None)
        record[name] = None if value is None else str(value)
    return record


@dataclass
class RunRecord:
    """One run as `autoupdated status` shows it."""

    number: int
    reason: str
    started: datetime
    finished: datetime | None = None
    dry_run: bool = False
    ok: bool = False
    summary: str = ""
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    pruned: int | None = None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            key = entry.get("updated") or "unknown"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.number,
            "reason": self.reason,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "duration": (self.finished - self.started).total_seconds() if self.finished else None,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "summary": self.summary,
            "error": self.error,
            "errors": self.errors,
            "warnings": self.warnings,
            "entries": self.entries,
            "pruned_images": self.pruned,
        }


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
        self.run_func: RunFunc = run_func or _engine_run
        self.options_factory: OptionsFactory = options_factory or engine_options
        self.notifier = notifier if notifier is not None else Notifier.from_environment()
        self.journal = journal if journal is not None else journal_mod.Journal()
        self.pruner: Pruner = pruner or prune_dangling_images
        self.install_signals = install_signals
        self.manage_logging = manage_logging
        self.tz = _local_timezone()
        self.state = StateDir(config_mod.state_dir(loaded.settings))
        self.socket_path = config_mod.control_socket(loaded.settings)
        self.started_at = datetime.now(UTC)

        self.engine_stop = asyncio.Event()  # handed to every run: set once, at shutdown
        self._stopping = asyncio.Event()
        self._scheduler: AsyncIOScheduler | None = None
        self._control: ControlServer | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

        self._run_task: asyncio.Task[None] | None = None
        self._current: RunRecord | None = None
        self._queued: tuple[int, list[str]] | None = None
        self._next_number = 1
        self._done: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.last_run: dict[str, Any] | None = None
        self.runs_completed = 0

    @property
    def settings(self) -> config_mod.Settings:
        return self.loaded.settings

    # -----------------------------------------------------------------------------------------
    # Logging

    def log(
        self, priority: int, message: str, *, message_id: str = journal_mod.MESSAGE_ID_DAEMON, **fields: object
    ) -> None:
        """One journal entry (stderr when there is no journal), filtered by `log_level`."""
        always = message_id in (
            journal_mod.MESSAGE_ID_RUN,
            journal_mod.MESSAGE_ID_RUN_FAILED,
            journal_mod.MESSAGE_ID_CONFIG,
        )
        if priority > LEVELS[self.settings.log_level] and not always:
            return
        sent = self.journal.send(message, priority=priority, fields={"MESSAGE_ID": message_id, **fields})
        if not sent or sys.stderr.isatty():
            print(f"autoupdated: {_LEVEL_NAMES.get(priority, 'info')}: {message}", file=sys.stderr, flush=True)

    # -----------------------------------------------------------------------------------------
    # Life cycle

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
            self._start_scheduler()
            catch_up_due = self._check_missed_run()
            self.notifier.ready(self.status_line())
            self.log(
                journal_mod.INFO,
                f"Started (pid {os.getpid()}); configuration {self._config_origin()}; schedule "
                f"{self.settings.schedule!r}; next run {_fmt_time(self.next_run_time(), self.tz)}",
                CONFIG_FILE=str(self.config_path),
            )
            self._arm_watchdog()
            if self.settings.run_on_start:
                if catch_up_due is not None:
                    self.state.touch_stamp()
                self.request_run("start" if catch_up_due is None else "start, catch-up")
            elif catch_up_due is not None:
                self._schedule_catch_up(catch_up_due)
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
            self.notifier.close()
            self.journal.close()

    def stop(self) -> None:
        """SIGTERM: stop starting things, let started restarts finish, then exit."""
        if self._stopping.is_set():
            return
        self.engine_stop.set()
        running = self._run_task is not None and not self._run_task.done()
        self.notifier.stopping(
            "Stopping: waiting for the run in progress to finish its restarts" if running else "Stopping"
        )
        self._stopping.set()

    async def _shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._queued is not None:
            number, _reasons = self._queued
            self._queued = None
            self._finish_waiters(number, {"ok": False, "error": "the daemon stopped before this run started"})
        task = self._run_task
        if task is not None and not task.done():
            self.log(
                journal_mod.NOTICE,
                "Stopping during a run: no new pull or restart starts; waiting up to "
                f"{self.settings.stop_timeout:g} s for restarts already started",
            )
            try:
                await asyncio.wait_for(asyncio.shield(task), self.settings.stop_timeout)
            except TimeoutError:
                self.log(
                    journal_mod.ERR,
                    f"The run did not finish within stop_timeout "
                    f"({self.settings.stop_timeout:g} s); abandoning it. Check `systemctl status` of "
                    "the units it was restarting.",
                    message_id=journal_mod.MESSAGE_ID_RUN_FAILED,
                )
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._control is not None:
            await self._control.close()
        for pending in list(self._background):
            pending.cancel()
        self.log(journal_mod.INFO, "Stopped")

    # -----------------------------------------------------------------------------------------
    # Scheduling

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._scheduler = AsyncIOScheduler(timezone=self.tz)
        self._scheduler.start()
        self._add_scheduled_job()

    def _add_scheduled_job(self) -> None:
        assert self._scheduler is not None
        trigger = self.settings.parsed_schedule.trigger(jitter=self.settings.randomized_delay, timezone=self.tz)
        self._scheduler.add_job(
            self._scheduled_fire,
            trigger,
            id=SCHEDULED_JOB,
            name="scheduled run",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    async def _scheduled_fire(self) -> None:
        if not self._stopping.is_set():
            self.state_touch_safely()
            self.request_run("schedule")

    async def _catch_up_fire(self) -> None:
        if not self._stopping.is_set():
            self.state_touch_safely()
            self.request_run("catch-up")

    def state_touch_safely(self) -> None:
        try:
            self.state.touch_stamp()
        except OSError as err:
            self.log(
                journal_mod.WARNING,
                f"cannot write the timer stamp {self.state.stamp_path}: {err}; "
                "a run missed while the machine is off will not be caught up",
            )

    def _check_missed_run(self) -> datetime | None:
        """Persistent=true: the scheduled time missed since the stamp, or None.  No stamp: make one."""
        stamp = self.state.read_stamp()
        if stamp is None:
            self.state_touch_safely()  # first start: from now on, missed runs are counted
            return None
        if not self.settings.persistent:
            return None
        due = self.settings.parsed_schedule.next_after(stamp, self.tz)
        if due is not None and due <= datetime.now(UTC):
            return due
        return None

    def _schedule_catch_up(self, due: datetime) -> None:
        from apscheduler.triggers.date import DateTrigger

        assert self._scheduler is not None
        delay = random.uniform(0, self.settings.randomized_delay)  # noqa: S311 - spreading load, not crypto
        when = datetime.now(UTC) + timedelta(seconds=delay)
        self.log(
            journal_mod.NOTICE,
            f"A scheduled run was missed ({_fmt_time(due, self.tz)}, last run "
            f"triggered {_fmt_time(self.state.read_stamp(), self.tz)}); catching up "
            f"{'now' if delay < 1 else 'at ' + _fmt_time(when, self.tz)}",
            MISSED_RUN=due.isoformat(),
        )
        self._scheduler.add_job(
            self._catch_up_fire,
            DateTrigger(when),
            id=CATCH_UP_JOB,
            name="catch-up run",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.notifier.status(self.status_line())

    def next_run_time(self) -> datetime | None:
        if self._scheduler is None:
            return None
        times = [job.next_run_time for job in self._scheduler.get_jobs() if job.next_run_time is not None]
        return min(times) if times else None

    # -----------------------------------------------------------------------------------------
    # Runs

    def request_run(self, reason: str) -> tuple[str, int]:
        """Start a run now, or queue one after the run in progress (merged with other requests)."""
        if self._stopping.is_set():
            raise ControlError("the daemon is stopping")
        if self._run_task is None or self._run_task.done():
            number = self._take_number()
            self._run_task = asyncio.create_task(self._runner(number, [reason]), name=f"run-{number}")
            return "started", number
        if self._queued is None:
            self._queued = (self._take_number(), [reason])
        else:
            self._queued[1].append(reason)
        self.log(
            journal_mod.DEBUG,
            f"Run requested ({reason}) during run {self._current_number()}: merged into run {self._queued[0]}",
        )
        return "queued", self._queued[0]

    def _take_number(self) -> int:
        number = self._next_number
        self._next_number += 1
        self._done[number] = asyncio.get_running_loop().create_future()
        return number

    def _current_number(self) -> int | None:
        return self._current.number if self._current else None

    async def wait_for_run(self, number: int) -> dict[str, Any]:
        future = self._done.get(number)
        if future is None:
            raise KeyError(number)
        return await asyncio.shield(future)

    def _finish_waiters(self, number: int, record: dict[str, Any]) -> None:
        future = self._done.pop(number, None)
        if future is not None and not future.done():
            future.set_result(record)

    async def _runner(self, number: int, reasons: list[str]) -> None:
        while True:
            record = await self._execute(number, ", ".join(dict.fromkeys(reasons)))
            self._finish_waiters(number, record)
            if self._queued is None or self._stopping.is_set():
                release_memory()
                return
            number, reasons = self._queued
            self._queued = None

    def _start_recovery(self) -> None:
        """Updates a killed daemon left half done are finished at once, before any other run."""
        if self.run_func is not _engine_run or self.settings.dry_run:
            return  # tests with their own run function; a monitor-only daemon changes nothing
        try:
            count = pending_recovery(self.settings)
        except Exception as err:
            self.log(journal_mod.ERR, f"Reading the history for interrupted updates failed: {err}")
            count = 1  # the recovery run reports the problem and the next start tries again
        if not count:
            return
        self.log(
            journal_mod.WARNING,
            f"{count} unit update(s) were interrupted (the daemon was killed or the machine lost power): "
            "finishing them now",
        )
        if self._run_task is not None and not self._run_task.done():
            return  # a run is starting already: it recovers first (_engine_run)
        number = self._take_number()
        self._run_task = asyncio.create_task(self._runner(number, [RECOVERY_REASON]), name=f"run-{number}")

    async def _execute(self, number: int, reason: str) -> dict[str, Any]:
        settings = self.settings  # the configuration in force when the run starts, for all of it
        record = RunRecord(number=number, reason=reason, started=datetime.now(UTC), dry_run=settings.dry_run)
        self._current = record
        self.notifier.status(self.status_line())
        self.log(journal_mod.DEBUG, f"Run {number} starting ({reason})", RUN=number)
        started = time.monotonic()
        try:
            options = self.options_factory(settings)
            run_func = _recovery_run if reason == RECOVERY_REASON else self.run_func
            result = await run_func(options, stop=self.engine_stop)
        except asyncio.CancelledError:
            record.error = "cancelled while stopping"
            self._complete(record, started)
            raise
        except Exception as err:
            if type(err).__name__ == "RunError":
                record.error = str(err)
                self._complete(record, started)
                self.log(
                    journal_mod.ERR,
                    f"Run {number} ({reason}) failed: {err}. The next run will try again.",
                    message_id=journal_mod.MESSAGE_ID_RUN_FAILED,
                    RUN=number,
                    REASON=reason,
                    RESULT="failed",
                )
            else:
                record.error = f"unexpected {type(err).__name__}: {err}"
                self._complete(record, started)
                self.log(
                    journal_mod.ERR,
                    f"Run {number} ({reason}) crashed: {record.error}. This is a bug in "
                    "autoupdated; the daemon keeps going and the next run will try again.",
                    message_id=journal_mod.MESSAGE_ID_RUN_FAILED,
                    RUN=number,
                    REASON=reason,
                    RESULT="failed",
                    TRACEBACK="".join(traceback.format_exception(err)),
                )
            return self._store(record)
        record.entries = [_entry_record(entry) for entry in getattr(result, "entries", [])]
        record.errors = [str(text) for text in getattr(result, "errors", [])]
        record.warnings = [str(text) for text in getattr(result, "warnings", [])]
        record.ok = not bool(getattr(result, "failed", False))
        summary = getattr(result, "summary", None)
        record.summary = summary() if callable(summary) else self._summarize(record)
        changed = any(entry.get("updated") in ("true", "rolled back") for entry in record.entries)
        if changed and settings.prune and not settings.dry_run and not self.engine_stop.is_set():
            record.pruned = await self._prune(settings)
        self._complete(record, started)
        self._log_summary(record, reason)
        return self._store(record)

    def _summarize(self, record: RunRecord) -> str:
        counts = record.counts()
        return (
            f"{len(record.entries)} containers: {counts.get('true', 0)} updated, "
            f"{counts.get('false', 0)} unchanged, {counts.get('failed', 0)} failed"
        )

    def _complete(self, record: RunRecord, started: float) -> None:
        record.finished = record.started + timedelta(seconds=time.monotonic() - started)
        if not record.summary:
            record.summary = record.error or self._summarize(record)

    def _store(self, record: RunRecord) -> dict[str, Any]:
        data = record.as_dict()
        self.last_run = data
        self._current = None
        self.runs_completed += 1
        try:
            self.state.write_last_run({**data, "next_run": _iso(self.next_run_time())})
        except OSError as err:
            self.log(journal_mod.WARNING, f"cannot write {self.state.last_run_path}: {err}")
        self.notifier.status(self.status_line())
        return data

    def _log_summary(self, record: RunRecord, reason: str) -> None:
        counts = record.counts()
        changed = counts.get("true", 0) + counts.get("rolled back", 0)
        if not record.ok:
            priority = journal_mod.ERR
        elif changed:
            priority = journal_mod.NOTICE
        else:
            priority = journal_mod.INFO
        message = f"Run {record.number} ({reason}){' [dry run]' if record.dry_run else ''}: {record.summary}"
        if record.errors:
            message += "; " + "; ".join(record.errors[:5])
            if len(record.errors) > 5:
                message += f"; and {len(record.errors) - 5} more errors"
        if record.pruned:
            message += f"; pruned {record.pruned} dangling images"
        self.log(
            priority,
            message,
            message_id=journal_mod.MESSAGE_ID_RUN,
            RUN=record.number,
            REASON=reason,
            RESULT="ok" if record.ok else "failed",
            CONTAINERS=len(record.entries),
            UPDATED=counts.get("true", 0),
            FAILED=counts.get("failed", 0),
            ROLLED_BACK=counts.get("rolled back", 0),
            PENDING=counts.get("pending", 0),
            DRY_RUN="1" if record.dry_run else "0",
            DURATION_SEC=f"{(record.finished - record.started).total_seconds():.3f}" if record.finished else "",
        )

    async def _prune(self, settings: config_mod.Settings) -> int | None:
        url = podman_url(settings)
        try:
            result = await asyncio.to_thread(self.pruner, url)
        except Exception as err:
            self.log(journal_mod.WARNING, f"Pruning dangling images through {url} failed: {err}")
            return None
        deleted = result.get("ImagesDeleted") or []
        space = result.get("SpaceReclaimed") or 0
        self.log(
            journal_mod.INFO,
            f"Pruned {len(deleted)} dangling images ({space} bytes reclaimed)",
            PRUNED_IMAGES=len(deleted),
        )
        return len(deleted)

    # -----------------------------------------------------------------------------------------
    # Reload

    def reload_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> bool:
        """SIGHUP: re-read the configuration; keep the old one if the new one is invalid."""
        async with self._reload_lock:
            if self._stopping.is_set():
                return False
            self.notifier.reloading()
            try:
                new = config_mod.load(self.config_path)
            except config_mod.ConfigError as err:
                self.log(
                    journal_mod.ERR,
                    f"Reload rejected, the configuration in force stays unchanged: {err}",
                    message_id=journal_mod.MESSAGE_ID_CONFIG,
                    CONFIG_FILE=str(self.config_path),
                    RESULT="rejected",
                )
                self.notifier.ready(self.status_line(note="last reload rejected, see the journal"))
                return False
            old = self.loaded
            changed = [key for key in config_mod.KEYS if getattr(old.settings, key) != getattr(new.settings, key)]
            self.loaded = new
            if "log_level" in changed and self.manage_logging:
                setup_logging(new.settings.log_level, self.journal)
            if {"schedule", "randomized_delay"} & set(changed) and self._scheduler is not None:
                self._add_scheduled_job()
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
                f"{', '.join(changed) or 'nothing'}; next run {_fmt_time(self.next_run_time(), self.tz)}",
                message_id=journal_mod.MESSAGE_ID_CONFIG,
                CONFIG_FILE=str(self.config_path),
                RESULT="reloaded",
                CHANGED=",".join(changed),
            )
            self.notifier.ready(self.status_line())
            return True

    def _config_origin(self) -> str:
        return str(self.config_path) if self.loaded.file_found else f"{self.config_path} (not found: defaults)"

    # -----------------------------------------------------------------------------------------
    # Watchdog, status, control requests

    def _arm_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return

        def tick() -> None:
            self.notifier.watchdog()
            self._watchdog = asyncio.get_running_loop().call_later(interval, tick)

        tick()

    def _signal_trigger(self) -> None:
        with contextlib.suppress(ControlError):
            self.request_run("signal")

    def status_line(self, note: str | None = None) -> str:
        """The STATUS= text: state, next run, last run's summary (one line, for `systemctl status`)."""
        current = self._current
        state = f"Running run {current.number} ({current.reason})" if current is not None else "Idle"
        parts = [state, f"next run {_fmt_time(self.next_run_time(), self.tz)}"]
        if self.last_run is not None:
            finished = self.last_run.get("finished") or self.last_run.get("started")
            when = _fmt_time(datetime.fromisoformat(finished), self.tz) if finished else "?"
            verdict = "" if self.last_run.get("ok") else "FAILED: "
            parts.append(f"last run {when}: {verdict}{self.last_run.get('summary')}")
        else:
            parts.append("last run: none yet")
        if note:
            parts.append(note)
        return "; ".join(parts)

    def status(self) -> dict[str, Any]:
        current = self._current.as_dict() if self._current is not None else None
        return {
            "ok": True,
            "daemon": {
                "pid": os.getpid(),
                "started": self.started_at.isoformat(),
                "config": str(self.config_path),
                "schedule": self.settings.schedule,
                "randomized_delay": self.settings.randomized_delay,
                "dry_run": self.settings.dry_run,
                "state": "running" if current else "idle",
                "runs_completed": self.runs_completed,
            },
            "current_run": current,
            "queued_run": self._queued[0] if self._queued else None,
            "next_run": _iso(self.next_run_time()),
            "last_run": self.last_run if self.last_run is not None else self.state.read_last_run(),
            "status_line": self.status_line(),
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
        return {"ok": False, "error": f"unknown command {command!r} (known: status, trigger)"}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


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
