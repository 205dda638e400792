"""The history database (autoupdated/history.py) alone and as the engine's HistoryPort.

Real SQLite files in tmp_path; the engine runs against the in-memory fakes of tests/fakes.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoupdated import engine
from autoupdated.adapters.history import IN_PROGRESS, History, HistoryError
from autoupdated.cli.history import format_rows
from autoupdated.model import ContainerInfo, Status
from tests import fakes
from tests.fakes import FakeComparer, FakePodman, FakePuller, FakeRestarter, container, image

REPO = Path(__file__).resolve().parents[3]
REF = "registry.test/app:latest"


def entry(n: int, updated: Status = Status.FAILED, **kw: str) -> engine.Entry:
    values = {
        "old_digest": "sha256:" + "a" * 64,
        "new_digest": "sha256:" + "b" * 64,
        "old_image_id": "old",
        "new_image_id": "",
    }
    values.update(kw)
    return engine.Entry(
        unit=f"container-c{n}.service",
        container_id=fakes.cid(n),
        container_name=f"c{n}",
        image=REF,
        policy="registry",
        updated=updated,
        **values,
    )


def test_schema_wal_and_the_three_steps(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history.db"
    with History(path, run_id="run-1") as history:
        assert history.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert history.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        record = history.intent("container-c1.service", [entry(1)])
        [pending] = history.pending()
        assert pending.unit == "container-c1.service" and pending.run_id == "run-1"
        assert [row.result for row in pending.rows] == [IN_PROGRESS]
        assert pending.rows[0].new_image_id == ""
        history.step(record, [entry(1, new_image_id="new")])
        assert history.pending()[0].rows[0].new_image_id == "new"
        history.outcome(record, [entry(1, Status.UPDATED, new_image_id="new")])
        assert history.pending() == []
        [row] = history.rows()
        assert (row.result, row.action, row.old_image_id, row.new_image_id) == ("true", "update", "old", "new")
        assert row.finished is not None and row.time <= row.finished
        assert history.integrity() == "ok"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_committed_steps_survive_a_killed_writer(tmp_path: Path) -> None:
    """Each step is its own transaction: a process killed after `intent` leaves the intent."""
    path = tmp_path / "history.db"
    script = (
        "import os, sys\n"
        "from autoupdated.adapters.history import History\n"
        "from tests.unit.adapters.test_history import entry\n"
        f"h = History({str(path)!r})\n"
        "h.intent('container-c1.service', [entry(1)])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    with History(path) as history:
        [pending] = history.pending()
        assert pending.rows[0].container_name == "c1"
        assert history.integrity() == "ok"


def test_reader_while_writer_holds_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    writer = History(path)
    writer.intent("u.service", [entry(1)])
    writer.db.execute("BEGIN IMMEDIATE")
    writer.db.execute("UPDATE updates SET result = 'x'")
    try:
        with History(path, readonly=True) as reader:  # WAL: readers are not blocked
            assert [r.result for r in reader.rows()] == [IN_PROGRESS]
    finally:
        writer.db.execute("ROLLBACK")
        writer.close()


def test_full_disk_becomes_a_clear_history_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with History(path) as history:
        pages = history.db.execute("PRAGMA page_count").fetchone()[0]
        history.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(HistoryError) as caught:
            history.intent("container-c1.service", [entry(n) for n in range(200)])
        text = str(caught.value)
        assert "recording the update of unit container-c1.service" in text
        assert str(path) in text and "full" in text
        assert history.pending() == [], "the failed step left nothing behind"
        assert history.integrity() == "ok"


def test_damaged_file_is_named_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError) as caught:
        History(path)
    assert str(path) in str(caught.value) and "move it away" in str(caught.value)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    History(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(HistoryError, match="newer autoupdated"):
        History(path)


def test_rows_filter_by_name_or_id_and_last_change(tmp_path: Path) -> None:
    with History(tmp_path / "h.db") as history:
        for n, result in ((1, Status.UPDATED), (2, Status.ROLLED_BACK), (1, Status.NOT_UPDATED)):
            record = history.intent(f"container-c{n}.service", [entry(n)])
            history.outcome(record, [entry(n, result, new_image_id=f"new{n}")])
        assert [r.container_name for r in history.rows("c1")] == ["c1", "c1"]
        assert [r.container_name for r in history.rows(fakes.cid(2)[:12])] == ["c2"]
        assert history.rows("01") == [], "ID prefixes need 3 characters"
        assert [r.result for r in history.rows(limit=2)] == ["rolled back", "false"]
        change = history.last_change("c1")
        assert change is not None and change.result == "true" and change.new_image_id == "new1"
        assert history.last_change("c2") is None


def test_remember_keeps_one_row_per_unit_and_container(tmp_path: Path) -> None:
    c = container(1, REF, labels={"io.containers.autoupdate.authfile": "/etc/auth.json"})
    with History(tmp_path / "h.db") as history:
        history.remember([("container-c1.service", c)])
        history.remember([("container-c1.service", c)])
        [known] = history.known_units()
        assert (known.unit, known.container_name, known.reference, known.policy, known.authfile) == (
            "container-c1.service",
            "c1",
            REF,
            "registry",
            "/etc/auth.json",
        )


# -- as the engine's HistoryPort ------------------------------------------------------------------


class RecordingPuller(FakePuller):
    """Notes, at each pull, whether the unit's intent was already in the database."""

    history: History | None = None
    seen_at_pull: dict[str, int] | None = None

    async def pull(self, reference: str, **kw: object) -> str:
        assert self.history is not None and self.seen_at_pull is not None
        self.seen_at_pull[reference] = len(self.history.pending())
        return await super().pull(reference, **kw)  # type: ignore[arg-type]


def setup(tmp_path: Path, n: int = 2) -> tuple[FakePodman, FakeRestarter, engine.Adapters, History]:
    refs = [f"registry.test/app{i}:latest" for i in range(1, n + 1)]
    podman = FakePodman(
        [container(i, refs[i - 1], image_id=f"old{i}") for i in range(1, n + 1)],
        images_by_id={f"old{i}": image(f"old{i}", f"sha256:{i}") for i in range(1, n + 1)},
    )
    puller = RecordingPuller({ref: f"new{i}" for i, ref in enumerate(refs, 1)}, podman=podman)
    history = History(tmp_path / "h.db")
    puller.history, puller.seen_at_pull = history, {}
    restarter = FakeRestarter(podman=podman)
    adapters = fakes.adapters(podman, FakeComparer({r: "sha256:remote" for r in refs}), puller, restarter)
    adapters.history = history
    return podman, restarter, adapters, history


async def test_engine_records_intent_before_the_pull_and_outcome_after(tmp_path: Path) -> None:
    _podman, _restarter, adapters, history = setup(tmp_path)
    options = engine.Options(settle_time=0, poll_interval=0.01)
    result = await engine.run(options, adapters=adapters)
    assert [e.updated for e in result.entries] == [Status.UPDATED, Status.UPDATED]
    assert adapters.puller.seen_at_pull == {  # type: ignore[attr-defined]
        "registry.test/app1:latest": 2,
        "registry.test/app2:latest": 2,
    }, "both units' intents were recorded before any pull"
    rows = history.rows()
    assert [(r.container_name, r.result, r.old_image_id, r.new_image_id) for r in rows] == [
        ("c1", "true", "old1", "new1"),
        ("c2", "true", "old2", "new2"),
    ]
    assert rows[0].new_digest == "sha256:remote" and rows[0].old_digest == "sha256:1"
    assert {k.unit for k in history.known_units()} == {"container-c1.service", "container-c2.service"}
    assert history.pending() == []


async def test_engine_outcomes_for_failed_pull_rollback_and_stop(tmp_path: Path) -> None:
    _podman, restarter, adapters, history = setup(tmp_path, 3)
    adapters.puller.errors["registry.test/app1:latest"] = RuntimeError("disk full")  # type: ignore[attr-defined]
    restarter.fail["container-c2.service"] = 1
    result = await engine.run(engine.Options(settle_time=0, poll_interval=0.01), adapters=adapters)
    assert [e.updated for e in result.entries] == [Status.FAILED, Status.ROLLED_BACK, Status.UPDATED]
    by_name = {r.container_name: r for r in history.rows()}
    assert by_name["c1"].result == "failed" and "disk full" in (by_name["c1"].error or "")
    assert by_name["c2"].result == "rolled back" and "rolled back" in (by_name["c2"].error or "")
    assert by_name["c3"].result == "true"
    assert history.pending() == []

    # A stop before the restarts: the recorded units end 'pending', nothing stays in progress.
    _podman2, restarter2, adapters2, history2 = setup(tmp_path / "second")
    stop = asyncio.Event()
    original = adapters2.puller.pull

    async def pull_then_stop(reference: str, **kw: object) -> str:
        stop.set()
        return await original(reference, **kw)  # type: ignore[arg-type]

    adapters2.puller.pull = pull_then_stop  # type: ignore[method-assign]
    result = await engine.run(engine.Options(settle_time=0), adapters=adapters2, stop=stop)
    assert restarter2.restarts == []
    assert {r.result for r in history2.rows()} == {"pending"}
    assert history2.pending() == []


async def test_no_restart_without_its_record(tmp_path: Path) -> None:
    podman, restarter, adapters, history = setup(tmp_path)
    pages = history.db.execute("PRAGMA page_count").fetchone()[0]
    history.db.execute(f"PRAGMA max_page_count = {pages}")
    history.db.execute("PRAGMA journal_mode = DELETE")  # no WAL growth room either
    big = "x" * 20000
    podman.containers = [
        ContainerInfo(c.id, c.name + big, c.image_id, c.raw_image_name, c.labels) for c in podman.containers
    ]
    result = await engine.run(engine.Options(settle_time=0), adapters=adapters)
    assert restarter.restarts == [] and adapters.puller.pulled == []  # type: ignore[attr-defined]
    assert all(e.updated is Status.FAILED for e in result.entries)
    assert any("history database" in text and "full" in text for text in result.errors), result.errors


# -- the CLI ------------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autoupdated", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_history_command_table_and_json(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with History(path) as history:
        record = history.intent("container-c1.service", [entry(1)])
        history.outcome(record, [entry(1, Status.UPDATED, new_image_id="sha256:" + "f" * 64)])
        record = history.intent("container-c2.service", [entry(2)])
        history.outcome(record, [entry(2, Status.ROLLED_BACK, new_image_id="n2", error="container c2 exited")])
        rows = history.rows()
    r = cli("history", "--db", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = ["TIME", "ACTION", "UNIT", "CONTAINER", "IMAGE", "OLD", "IMAGE", "NEW", "IMAGE", "RESULT"]
    assert lines[0].split() == header
    assert f"{fakes.cid(1)[:12]} (c1)" in lines[1] and lines[1].endswith("true") and "ffffffffffff" in lines[1]
    assert lines[2].endswith("rolled back") and lines[3].strip() == "error: container c2 exited"
    assert r.stdout.strip() == format_rows(rows)
    r = cli("history", "--db", str(path), "--container", "c2", "--format", "json")
    data = json.loads(r.stdout)
    assert [d["container_name"] for d in data] == ["c2"] and data[0]["result"] == "rolled back"
    r = cli("history", "--db", str(tmp_path / "none.db"), "--format", "json")
    assert (r.returncode, r.stdout.strip()) == (0, "[]") and "no history yet" in r.stderr


def test_rollback_command_explains_when_there_is_nothing(tmp_path: Path) -> None:
    r = cli("rollback", "--db", str(tmp_path / "none.db"), "web")
    assert r.returncode == 1 and "no recorded update to roll back" in r.stderr
    with History(tmp_path / "h.db") as history:
        record = history.intent("container-c1.service", [entry(1)])
        history.outcome(record, [entry(1, Status.ROLLED_BACK, new_image_id="n")])
    r = cli("rollback", "--db", str(tmp_path / "h.db"), "c1")
    assert r.returncode == 1 and "no recorded update changed the image of container c1" in r.stderr
    assert "Traceback" not in r.stderr


async def test_an_update_rolled_back_on_request_is_not_applied_again(tmp_path: Path) -> None:
    _podman, restarter, adapters, history = setup(tmp_path, 1)
    rollback = History(history.path, action="rollback")
    undo = entry(1, old_digest="sha256:remote", new_digest="sha256:1", old_image_id="new1", new_image_id="old1")
    undo.image = "registry.test/app1:latest"
    record = rollback.intent("container-c1.service", [undo])
    undo.updated = Status.ROLLED_BACK
    rollback.outcome(record, [undo])
    assert history.held("registry.test/app1:latest", "sha256:remote") is not None
    assert history.held("registry.test/app1:latest", "sha256:newer") is None
    result = await engine.run(engine.Options(settle_time=0), adapters=adapters)
    assert [e.updated for e in result.entries] == [Status.NOT_UPDATED]
    assert restarter.restarts == [] and adapters.puller.pulled == []  # type: ignore[attr-defined]
    assert any("rolled back on request" in text and "a newer image will be applied" in text for text in result.warnings)
    # A newer image is applied as usual.
    adapters.comparer.remote["registry.test/app1:latest"] = "sha256:newer"  # type: ignore[attr-defined]
    result = await engine.run(engine.Options(settle_time=0), adapters=adapters)
    assert [e.updated for e in result.entries] == [Status.UPDATED]
