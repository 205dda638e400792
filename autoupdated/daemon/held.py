"""The daemon's side of the operator controls (docs/controls.md): what waits, for `status`;
`approve` over the control socket; and the wake-up run when the first held update may go on by
itself (a restart window opens, a cooldown ends), so nobody waits for the next scheduled run.

The approval restarts through the normal path: it is recorded for the digest that waits, and a
run follows (check, pull, restart, health gate, rollback: engine/unit.py).  That run re-checks:
if the image moved again in between, the new digest waits for its own approval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoupdated import wiring
from autoupdated.adapters import journal as journal_mod
from autoupdated.controls.approval import approve, next_wakeup
from autoupdated.daemon.logs import DaemonLog
from autoupdated.errors import HistoryError

MAX_SLEEP = 86400.0  # re-armed after every run anyway; a far-off timer is re-computed daily


class Held:
    def __init__(
        self,
        history: Callable[[], Path | None],
        request_run: Callable[[str], tuple[str, int]],
        wait_for_run: Callable[[int], Awaitable[dict[str, Any]]],
        log: DaemonLog,
    ) -> None:
        self.history = history
        self.request_run = request_run
        self.wait_for_run = wait_for_run
        self.log = log
        self._timer: asyncio.TimerHandle | None = None
        self.wakeup: datetime | None = None

    def new_tags(self) -> list[dict[str, object]]:
        try:
            return wiring.new_tags(self.history())
        except HistoryError as err:
            return [{"error": str(err)}]

    def status(self) -> list[dict[str, Any]]:
        try:
            held = wiring.held_updates(self.history())
        except HistoryError as err:
            return [{"error": str(err)}]
        out = []
        for entry in held:
            item: dict[str, Any] = entry.as_dict()
            if entry.waits_for == "approval":
                item["approve"] = f"autoupdated approve {entry.container} --digest {entry.digest}"
            out.append(item)
        return out

    async def approve(self, request: dict[str, Any]) -> dict[str, Any]:
        target = str(request.get("target") or "")
        digest = str(request.get("digest") or "") or None
        path = self.history()
        if not target:
            return {"ok": False, "error": "approve needs a container or unit name"}
        if path is None:
            return {"ok": False, "error": "approvals are kept in the history database: set history = true"}
        try:
            decision = approve(wiring.held_updates(path), target, digest)
            if decision.refused:
                return {"ok": False, "error": decision.refused}
            wiring.record_approval(path, decision.approved)
        except HistoryError as err:
            return {"ok": False, "error": str(err)}
        names = [w.container for w in decision.approved]
        self.log(journal_mod.NOTICE, f"approved: {', '.join(f'{w.container} ({w.digest})' for w in decision.approved)}")
        _, number = self.request_run(f"approve {target}")
        result = await self.wait_for_run(number)
        entries = [e for e in result.get("entries") or [] if e.get("container_name") in names]
        return {"ok": True, "approved": [w.as_dict() for w in decision.approved], "run": number, "entries": entries}

    def rearm(self) -> None:
        """After a run: a timer for the first moment a held update may go on."""
        self.cancel()
        try:
            held = wiring.held_updates(self.history())
        except HistoryError as err:
            self.log(journal_mod.WARNING, f"cannot read the held updates: {err}")
            return
        now = datetime.now(UTC)
        self.wakeup = next_wakeup(held, now)
        if self.wakeup is None:
            return
        delay = min(MAX_SLEEP, max(0.0, (self.wakeup - now).total_seconds()))
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        with contextlib.suppress(Exception):
            self.request_run("held update due (restart window or cooldown)")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
