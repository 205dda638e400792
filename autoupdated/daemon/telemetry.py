"""Metrics and the read-only status endpoint: the listener (`metrics_listen`) and the
node_exporter textfile (`metrics_textfile`), kept in step with the configuration.

A reload that moves the listener binds the new address first; when that fails the old one
keeps serving and the journal says why.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autoupdated import config as config_mod
from autoupdated.adapters import journal as journal_mod
from autoupdated.adapters.history import History
from autoupdated.adapters.httpapi import HttpError, HttpServer, Reply
from autoupdated.adapters.metrics import CONTENT_TYPE, Metrics
from autoupdated.adapters.registry import observe
from autoupdated.daemon.logs import DaemonLog
from autoupdated.notifyconf import Listen

JSON = "application/json"
HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 1000


class Telemetry:
    def __init__(
        self,
        log: DaemonLog,
        status: Callable[[], dict[str, Any]],
        history_path: Callable[[], Path | None],
        next_run: Callable[[], float | None],
    ) -> None:
        self.log = log
        self.status = status
        self.history_path = history_path
        self.metrics = Metrics(next_run)
        self.server: HttpServer | None = None
        self.listen: str | None = None
        self.textfile: str | None = None
        self._unwatch = observe.watch(self.metrics.registry_request, self.metrics.rate_limit_wait)

    async def apply(self, settings: config_mod.Settings) -> None:
        """Start, move or stop the listener as `metrics_listen` says."""
        self.textfile = settings.metrics_textfile
        wanted = settings.metrics_listen
        if wanted == self.listen:
            return
        if wanted is None:
            await self._close_server()
            self.listen = None
            return
        server = HttpServer(self._routes())
        where = Listen.parse(wanted)
        try:
            await server.start(host=where.host, port=where.port, path=where.path)
        except HttpError as err:
            kept = f"; still serving on {self.server.address}" if self.server is not None else ""
            self.log(
                journal_mod.ERR,
                f"metrics_listen = {wanted!r}: {err}{kept}. Free the port or pick another address, then "
                "`systemctl reload autoupdated`.",
                message_id=journal_mod.MESSAGE_ID_CONFIG,
                RESULT="warning",
            )
            return
        await self._close_server()
        self.server, self.listen = server, wanted
        self.log(journal_mod.INFO, f"Serving /metrics and /api/v1/status on {server.address} (read-only)")

    def after_run(self, run: Mapping[str, Any]) -> None:
        self.metrics.observe_run(run)
        if self.textfile:
            try:
                self.metrics.write_textfile(self.textfile)
            except OSError as err:
                self.log(
                    journal_mod.WARNING,
                    f"metrics_textfile = {self.textfile!r}: cannot write it: {err.strerror or err}; check that the "
                    "directory exists and the unit may write it (ReadWritePaths=, see docs/metrics.md)",
                )

    async def close(self) -> None:
        self._unwatch()
        await self._close_server()

    async def _close_server(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    # -- routes ------------------------------------------------------------------------------

    def _routes(self) -> dict[str, Any]:
        return {"/metrics": self._metrics, "/api/v1/status": self._status, "/api/v1/history": self._history}

    async def _metrics(self, query: Mapping[str, str]) -> Reply:
        return Reply(200, CONTENT_TYPE, self.metrics.text())

    async def _status(self, query: Mapping[str, str]) -> Reply:
        return Reply(200, JSON, json.dumps(self.status(), indent=2).encode())

    async def _history(self, query: Mapping[str, str]) -> Reply:
        try:
            limit = min(int(query.get("limit", HISTORY_LIMIT)), MAX_HISTORY_LIMIT)
        except ValueError:
            return Reply(400, JSON, b'{"ok": false, "error": "limit must be a number"}')
        path = self.history_path()
        if path is None or not path.exists():
            return Reply(200, JSON, b"[]")
        container = query.get("container") or None
        try:
            rows = await asyncio.to_thread(_rows, path, container, limit)
        except Exception as err:
            return Reply(503, JSON, json.dumps({"ok": False, "error": str(err)}).encode())
        return Reply(200, JSON, json.dumps(rows, indent=2).encode())


def _rows(path: Path, container: str | None, limit: int) -> list[dict[str, object]]:
    with History(path, readonly=True) as history:
        return [row.as_dict() for row in history.rows(container, limit=max(limit, 0))]
