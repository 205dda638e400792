"""Notifications after each run: what to tell whom (autoupdated/events.py), sent through Apprise.

Sends happen after the run's outcome is recorded, in a worker thread under a deadline, one
delivery at a time (in order, so "what was told" stays true); nothing here can fail or delay a
run.  What each target was told is kept in the history database (table `notified`), so a
restarted daemon does not repeat itself; without a history (`history = false`) it is kept in
memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autoupdated import config as config_mod
from autoupdated import events as ev
from autoupdated.adapters import journal as journal_mod
from autoupdated.adapters.apprise_targets import AppriseTarget, Delivery
from autoupdated.adapters.history import History
from autoupdated.daemon.logs import DaemonLog
from autoupdated.model import Entry, Status

MESSAGE_ID_NOTIFY = journal_mod.MESSAGE_ID_DAEMON


def target_key(target: AppriseTarget) -> str:
    """The target's identity in the history: a hash of its URLs and config path, never a URL."""
    text = "\n".join([*target.target.all_urls, target.target.config or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def build_targets(settings: config_mod.Settings) -> list[AppriseTarget]:
    return [
        AppriseTarget(entry, entry.label(index), timeout=settings.notify_timeout, retries=settings.notify_retries)
        for index, entry in enumerate(settings.notify)
    ]


def entries_of(run: Mapping[str, Any]) -> list[Entry]:
    """A RunRecord's entries (plain dicts) as the engine's records again."""
    found = []
    for data in run.get("entries") or []:
        try:
            status = Status(data.get("updated"))
        except ValueError:
            continue
        found.append(Entry(**{**data, "updated": status}))
    return found


# Seconds a stopping daemon waits for notifications under way (the unit's TimeoutStopSec leaves room).
STOP_GRACE = 10.0


class Notifications:
    def __init__(
        self,
        log: DaemonLog,
        history_path: Callable[[], Path | None],
        counted: Callable[[str, bool], None] = lambda target, ok: None,
    ) -> None:
        self.log = log
        self.history_path = history_path
        self.counted = counted
        self.targets: list[AppriseTarget] = []
        self.host = socket.gethostname()
        self._memory: dict[str, dict[str, str]] = {}  # without a history database
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self.deadline = 30.0

    def configure(self, settings: config_mod.Settings) -> None:
        self.targets = build_targets(settings)
        self.deadline = settings.notify_timeout * (settings.notify_retries + 1) + 2**settings.notify_retries + 5

    # -- after a run, daemon events --------------------------------------------------------

    def after_run(self, run: Mapping[str, Any]) -> None:
        if self.targets:
            self._spawn(self._after_run(run))

    def daemon_event(self, what: str, detail: str = "") -> None:
        wanted = [target for target in self.targets if target.target.wants("daemon")]
        if wanted:
            self._spawn(self._send_all(wanted, ev.daemon_message(self.host, what, detail)))

    async def drain(self, deadline: float) -> None:
        """Stopping: give the sends under way (the "stopping" message among them) a bounded time,
        at most STOP_GRACE, so stop_timeout plus this stays inside the unit's TimeoutStopSec."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=min(deadline, STOP_GRACE))
        for task in list(self._pending):
            task.cancel()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work, name="notify")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _after_run(self, run: Mapping[str, Any]) -> None:
        observed = ev.events_of(entries_of(run), run.get("errors") or [], run.get("error"))
        async with self._lock:
            for target in list(self.targets):
                wanted = [e for e in observed.events if target.target.wants(e.kind, e.container, e.unit)]
                key = target_key(target)
                told = await self._told(key)
                send, remember = ev.due(observed, told, wanted)
                if send:
                    message = ev.compose(send, self.host, run.get("run"))
                    if not await self._deliver(target, message):
                        # Not told: only the quiet resets are kept, the events are tried again next run.
                        remember = {k: v for k, v in remember.items() if k not in {e.key for e in send}}
                await self._remember(key, remember)

    async def _send_all(self, targets: list[AppriseTarget], message: ev.Message) -> None:
        async with self._lock:
            for target in targets:
                await self._deliver(target, message)

    async def _deliver(self, target: AppriseTarget, message: ev.Message) -> bool:
        try:
            results = await asyncio.wait_for(asyncio.to_thread(target.send, message), self.deadline)
        except TimeoutError:
            results = [Delivery(target.label, False, 0, f"no answer within {self.deadline:g} s")]
        except Exception as err:
            results = [Delivery(target.label, False, 0, target.secrets.scrub(f"{type(err).__name__}: {err}"))]
        ok = all(result.ok for result in results)
        for result in results:
            self.counted(target.label, result.ok)
            if not result.ok:
                self.log(
                    journal_mod.WARNING,
                    f"Notification to {target.label} ({result.where}) failed after {result.attempts} tries: "
                    f"{result.reason}. The run is not affected; check the URL with `autoupdated notify test`.",
                    message_id=MESSAGE_ID_NOTIFY,
                    NOTIFY_TARGET=target.label,
                    RESULT="failed",
                )
            else:
                self.log(
                    journal_mod.DEBUG,
                    f"Notification sent to {target.label} ({result.where}): {message.title}",
                    NOTIFY_TARGET=target.label,
                    RESULT="sent",
                )
        return ok

    # -- what was told -------------------------------------------------------------------------

    async def _told(self, key: str) -> dict[str, str]:
        path = self.history_path()
        if path is None:
            return dict(self._memory.get(key, {}))
        try:
            return await asyncio.to_thread(_read_told, path, key)
        except Exception as err:
            self.log(journal_mod.WARNING, f"Reading what notifications were sent from {path}: {err}")
            return dict(self._memory.get(key, {}))

    async def _remember(self, key: str, states: dict[str, str]) -> None:
        if not states:
            return
        self._memory.setdefault(key, {}).update(states)
        path = self.history_path()
        if path is None:
            return
        try:
            await asyncio.to_thread(_write_told, path, key, states)
        except Exception as err:
            self.log(journal_mod.WARNING, f"Recording the notifications sent in {path}: {err}")


def _read_told(path: Path, key: str) -> dict[str, str]:
    if not path.exists():
        return {}
    with History(path, action="notify") as history:
        return history.notified(key)


def _write_told(path: Path, key: str, states: dict[str, str]) -> None:
    with History(path, action="notify") as history:
        history.remember_notified(key, states)


async def probe(settings: config_mod.Settings) -> list[tuple[str, Delivery]]:
    """`autoupdated notify test`: a test message to every target; each URL's result."""
    host = socket.gethostname()
    found: list[tuple[str, Delivery]] = []
    for target in build_targets(settings):
        with contextlib.suppress(asyncio.CancelledError):
            results = await asyncio.to_thread(target.send, ev.probe_message(host, target.label))
            found += [(target.label, result) for result in results]
    return found
