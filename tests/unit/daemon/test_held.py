"""The daemon's side of the controls (daemon/held.py) over a real control store, runs faked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autoupdated.adapters.controlstore import ControlStore
from autoupdated.controls.model import Waiting
from autoupdated.daemon.held import Held

DIGEST = "sha256:" + "1" * 64


class Runs:
    def __init__(self) -> None:
        self.requested: list[str] = []

    def request(self, reason: str) -> tuple[str, int]:
        self.requested.append(reason)
        return "started", len(self.requested)

    async def wait(self, number: int) -> dict[str, Any]:
        return {"entries": [{"container_name": "db", "updated": "true"}, {"container_name": "web"}]}


def held_for(path: Path, runs: Runs) -> Held:
    return Held(lambda: path, runs.request, runs.wait, lambda *a, **k: None)  # type: ignore[arg-type]


def test_status_lists_what_waits_with_the_approve_command(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    ControlStore(path).waiting(Waiting("db", "container-db.service", "r/db:1", DIGEST, "approval", "why"))
    (item,) = held_for(path, Runs()).status()
    assert item["approve"] == f"autoupdated approve db --digest {DIGEST}"


def test_approve_records_the_digest_runs_and_answers_for_the_container(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = ControlStore(path)
    store.waiting(Waiting("db", "container-db.service", "r/db:1", DIGEST, "approval", "why"))
    runs = Runs()
    reply = asyncio.run(held_for(path, runs).approve({"target": "container-db.service", "digest": DIGEST}))
    assert reply["ok"] and reply["entries"] == [{"container_name": "db", "updated": "true"}]
    assert store.approved("db") == DIGEST and runs.requested == ["approve container-db.service"]


def test_a_stale_approval_is_refused_and_starts_no_run(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    ControlStore(path).waiting(Waiting("db", "u.service", "r/db:1", DIGEST, "approval", "why"))
    runs = Runs()
    reply = asyncio.run(held_for(path, runs).approve({"target": "db", "digest": "sha256:" + "2" * 64}))
    assert not reply["ok"] and "has moved since" in reply["error"] and runs.requested == []


def test_the_wakeup_run_comes_when_a_window_opens(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    soon = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    ControlStore(path).waiting(Waiting("web", "u.service", "r/web:1", DIGEST, "window", "why", soon))
    runs = Runs()

    async def scenario() -> None:
        held = held_for(path, runs)
        held.rearm()
        assert held.wakeup is not None
        await asyncio.sleep(0.6)

    asyncio.run(scenario())
    assert runs.requested == ["held update due (restart window or cooldown)"]
