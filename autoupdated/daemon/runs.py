"""Runs never overlap: requesting, queueing and merging them, and recording each one.

Every run (scheduled, catch-up, run-on-start, `autoupdated trigger`, SIGUSR1) goes through
`request`: with no run in progress one starts; during a run the request is queued, and every
request that arrives during that run is merged into the single run that follows it.  Updates
a killed daemon left half done are finished first (`start_recovery`, and before every run).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from autoupdated import wiring
from autoupdated.adapters import journal as journal_mod
from autoupdated.adapters.control import ControlError
from autoupdated.adapters.state import StateDir
from autoupdated.config import Settings
from autoupdated.daemon.logs import DaemonLog
from autoupdated.daemon.status import RunRecord
from autoupdated.engine import Options
from autoupdated.errors import RunError
from autoupdated.model import PruneReport, RunResult

RECOVERY_REASON = "recovery"


class RunFunc(Protocol):
    def __call__(self, options: Any, *, stop: asyncio.Event | None = None) -> Awaitable[RunResult]: ...


OptionsFactory = Callable[[Settings], Any]
Pruner = Callable[[str], PruneReport]


# What the daemon's runs learned of each registry (scheme, auth challenge), kept for its
# lifetime: a scheduled run then asks every registry at once instead of probing it first.
_REGISTRY_FACTS = wiring.HostFacts()


async def engine_run(options: Options, *, stop: asyncio.Event | None = None) -> RunResult:
    """One run; an update a dead daemon (or a cancelled run) left half done is finished first."""
    recovered = await wiring.recover(options) if options.history_path and not options.dry_run else None
    result = await wiring.run(options, stop=stop, facts=_REGISTRY_FACTS)
    if recovered is not None and recovered.entries:
        result.errors[:0] = recovered.errors
        result.warnings[:0] = [f"finished an interrupted update: {text}" for text in recovered.warnings]
    return result


async def recovery_run(options: Options, *, stop: asyncio.Event | None = None) -> RunResult:
    """The run at start-up when the history holds unfinished updates: only finish them."""
    return await wiring.recover(options)


class Runs:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        run_func: RunFunc,
        recovery_func: Callable[[], RunFunc],
        options_factory: OptionsFactory,
        pruner: Pruner,
        state: StateDir,
        log: DaemonLog,
        on_change: Callable[[], None],
        next_run: Callable[[], str | None],
        on_recorded: Callable[[dict[str, Any]], None] = lambda run: None,
    ) -> None:
        self.settings = settings
        self.run_func = run_func
        self.recovery_func = recovery_func
        self.options_factory = options_factory
        self.pruner = pruner
        self.state = state
        self.log = log
        self.on_change = on_change  # the STATUS= line changed
        self.next_run = next_run
        self.on_recorded = on_recorded  # after the outcome is stored: metrics, notifications
        self.engine_stop = asyncio.Event()  # handed to every run: set once, at shutdown
        self.task: asyncio.Task[None] | None = None
        self.current: RunRecord | None = None
        self.queued: tuple[int, list[str]] | None = None
        self.last: dict[str, Any] | None = None
        self.completed = 0
        self._next_number = 1
        self._done: dict[int, asyncio.Future[dict[str, Any]]] = {}

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def request(self, reason: str) -> tuple[str, int]:
        """Start a run now, or queue one after the run in progress (merged with other requests)."""
        if self.engine_stop.is_set():
            raise ControlError("the daemon is stopping")
        if not self.running:
            number = self._take_number()
            self.task = asyncio.create_task(self._runner(number, [reason]), name=f"run-{number}")
            return "started", number
        if self.queued is None:
            self.queued = (self._take_number(), [reason])
        else:
            self.queued[1].append(reason)
        self.log(
            journal_mod.DEBUG,
            f"Run requested ({reason}) during run {self.current.number if self.current else None}: "
            f"merged into run {self.queued[0]}",
        )
        return "queued", self.queued[0]

    def start_recovery(self, pending: int) -> None:
        """Updates a killed daemon left half done are finished at once, before any other run."""
        self.log(
            journal_mod.WARNING,
            f"{pending} unit update(s) were interrupted (the daemon was killed or the machine lost power): "
            "finishing them now",
        )
        if self.running:
            return  # a run is starting already: it recovers first (engine_run)
        number = self._take_number()
        self.task = asyncio.create_task(self._runner(number, [RECOVERY_REASON]), name=f"run-{number}")

    def _take_number(self) -> int:
        number = self._next_number
        self._next_number += 1
        self._done[number] = asyncio.get_running_loop().create_future()
        return number

    async def wait_for(self, number: int) -> dict[str, Any]:
        future = self._done.get(number)
        if future is None:
            raise KeyError(number)
        return await asyncio.shield(future)

    def _finish_waiters(self, number: int, record: dict[str, Any]) -> None:
        future = self._done.pop(number, None)
        if future is not None and not future.done():
            future.set_result(record)

    async def drain(self, stop_timeout: float) -> None:
        """Stopping: the queued run never starts; the one in progress may finish its restarts."""
        if self.queued is not None:
            number, _reasons = self.queued
            self.queued = None
            self._finish_waiters(number, {"ok": False, "error": "the daemon stopped before this run started"})
        task = self.task
        if task is None or task.done():
            return
        self.log(
            journal_mod.NOTICE,
            f"Stopping during a run: no new pull or restart starts; waiting up to {stop_timeout:g} s "
            "for restarts already started",
        )
        try:
            await asyncio.wait_for(asyncio.shield(task), stop_timeout)
        except TimeoutError:
            self.log(
                journal_mod.ERR,
                f"The run did not finish within stop_timeout ({stop_timeout:g} s); abandoning it. "
                "Check `systemctl status` of the units it was restarting.",
                message_id=journal_mod.MESSAGE_ID_RUN_FAILED,
            )
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _runner(self, number: int, reasons: list[str]) -> None:
        while True:
            record = await self._execute(number, ", ".join(dict.fromkeys(reasons)))
            self._finish_waiters(number, record)
            if self.queued is None or self.engine_stop.is_set():
                release_memory()
                return
            number, reasons = self.queued
            self.queued = None

    async def _execute(self, number: int, reason: str) -> dict[str, Any]:
        settings = self.settings()  # the configuration in force when the run starts, for all of it
        record = RunRecord(number=number, reason=reason, started=datetime.now(UTC), dry_run=settings.dry_run)
        self.current = record
        self.on_change()
        self.log(journal_mod.DEBUG, f"Run {number} starting ({reason})", RUN=number)
        started = time.monotonic()
        try:
            options = self.options_factory(settings)
            run_func = self.recovery_func() if reason == RECOVERY_REASON else self.run_func
            result = await run_func(options, stop=self.engine_stop)
        except asyncio.CancelledError:
            record.error = "cancelled while stopping"
            self._complete(record, started)
            raise
        except Exception as err:
            self._failed(record, started, reason, err)
            return self._store(record)
        record.take(result)
        if record.changed and settings.prune and not settings.dry_run and not self.engine_stop.is_set():
            record.pruned = await self._prune(settings)
        self._complete(record, started)
        self._log_summary(record, reason)
        return self._store(record)

    def _failed(self, record: RunRecord, started: float, reason: str, err: Exception) -> None:
        fields: dict[str, object] = {"RUN": record.number, "REASON": reason, "RESULT": "failed"}
        if isinstance(err, RunError):
            record.error = str(err)
            message = f"Run {record.number} ({reason}) failed: {err}. The next run will try again."
        else:
            record.error = f"unexpected {type(err).__name__}: {err}"
            message = (
                f"Run {record.number} ({reason}) crashed: {record.error}. This is a bug in "
                "autoupdated; the daemon keeps going and the next run will try again."
            )
            fields["TRACEBACK"] = "".join(traceback.format_exception(err))
        self._complete(record, started)
        self.log(journal_mod.ERR, message, message_id=journal_mod.MESSAGE_ID_RUN_FAILED, **fields)

    def _complete(self, record: RunRecord, started: float) -> None:
        record.finished = record.started + timedelta(seconds=time.monotonic() - started)
        if not record.summary:
            record.summary = record.error or record.fallback_summary()

    def _store(self, record: RunRecord) -> dict[str, Any]:
        data = record.as_dict()
        self.last = data
        self.current = None
        self.completed += 1
        try:
            self.state.write_last_run({**data, "next_run": self.next_run()})
        except OSError as err:
            self.log(journal_mod.WARNING, f"cannot write {self.state.last_run_path}: {err}")
        self.on_change()
        try:
            self.on_recorded(data)
        except Exception as err:  # telling people about a run never fails it
            self.log(journal_mod.ERR, f"After run {record.number}: reporting it failed: {type(err).__name__}: {err}")
        return data

    def _log_summary(self, record: RunRecord, reason: str) -> None:
        counts = record.counts()
        changed = counts.get("true", 0) + counts.get("rolled back", 0)
        priority = journal_mod.ERR if not record.ok else journal_mod.NOTICE if changed else journal_mod.INFO
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

    async def _prune(self, settings: Settings) -> int | None:
        url = wiring.podman_url(settings.podman_url)
        try:
            report = await asyncio.to_thread(self.pruner, url)
        except Exception as err:
            self.log(journal_mod.WARNING, f"Pruning dangling images through {url} failed: {err}")
            return None
        self.log(
            journal_mod.INFO,
            f"Pruned {len(report.deleted)} dangling images ({report.reclaimed} bytes reclaimed)",
            PRUNED_IMAGES=len(report.deleted),
        )
        return len(report.deleted)


def release_memory() -> None:
    """After a run the daemon sleeps until the next one: give the heap the run grew back to the
    system.  glibc keeps freed memory for reuse otherwise (about 7 MB after a run over 60
    containers, most of what an idle daemon holds beyond its modules).  No-op elsewhere."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
