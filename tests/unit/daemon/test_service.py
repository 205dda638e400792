"""The daemon in-process: scheduling, merged triggers, reload, stop, catch-up, sd_notify, journal.

The engine is a fake (the daemon takes the run callable as a parameter); everything else is
real: APScheduler, the control socket, and datagram sockets standing in for systemd's notify
socket and journald's socket.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autoupdated import config as config_mod
from autoupdated import engine
from autoupdated.adapters import control, journal
from autoupdated.adapters.notify import Notifier
from autoupdated.daemon.service import Daemon
from autoupdated.model import PruneReport, Status
from tests.harness.sinks import Sink, wait_for


@dataclass
class FakeEngine:
    """Stands in for engine.run: records calls and concurrency; behaviour per call."""

    duration: float = 0.0
    outcome: Status = Status.NOT_UPDATED
    raise_error: Exception | None = None
    ignore_stop: bool = False
    calls: list[Any] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    stop_seen: list[bool] = field(default_factory=list)
    finished: int = 0

    async def __call__(self, options: Any, *, stop: asyncio.Event | None = None) -> engine.RunResult:
        self.calls.append(options)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.raise_error is not None:
                raise self.raise_error
            if self.duration:
                assert stop is not None
                if self.ignore_stop:
                    await asyncio.sleep(self.duration)
                else:
                    # A restart "in flight" when stop is set still finishes (bounded), like the engine.
                    with _suppress_timeout():
                        await asyncio.wait_for(stop.wait(), self.duration)
                    if stop.is_set():
                        await asyncio.sleep(0.2)
            self.stop_seen.append(bool(stop and stop.is_set()))
            result = engine.RunResult()
            result.entries.append(
                engine.Entry(
                    unit="container-web.service",
                    container_id="a" * 64,
                    container_name="web",
                    image="registry.test/web:latest",
                    policy="registry",
                    updated=self.outcome,
                )
            )
            if self.outcome is Status.FAILED:
                result.errors.append("restarting unit container-web.service during update: boom")
            self.finished += 1
            return result
        finally:
            self.active -= 1


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *rest: object) -> bool:
        return kind is TimeoutError


@dataclass
class Harness:
    daemon: Daemon
    task: asyncio.Task[int]
    fake: FakeEngine
    notify: Sink
    journal: Sink
    config_path: Path
    pruned: list[str]
    seen: int = 0

    def entries(self, message_id: str | None = None) -> list[dict[str, str]]:
        entries = self.journal.drain()
        return [e for e in entries if message_id is None or e.get("MESSAGE_ID") == message_id]

    def notifications(self) -> list[dict[str, str]]:
        """Notifications since the last call."""
        everything = self.notify.drain()
        new = everything[self.seen :]
        self.seen = len(everything)
        return new

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(control.request, self.daemon.socket_path, message, timeout=30)


Starter = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Starter]:
    for name in list(os.environ):
        if name.startswith("AUTOUPDATED_"):
            monkeypatch.delenv(name)
    harnesses: list[Harness] = []

    async def starter(
        toml: str = "",
        *,
        fake: FakeEngine | None = None,
        watchdog_usec: int = 0,
        install_signals: bool = False,
        stamp: datetime | None = None,
    ) -> Harness:
        path = tmp_path / "autoupdated.toml"
        path.write_text(
            f'state_dir = "{tmp_path}/state"\ncontrol_socket = "{tmp_path}/control.sock"\nrandomized_delay = 0\n{toml}'
        )
        if stamp is not None:
            (tmp_path / "state").mkdir(exist_ok=True)
            stamp_file = tmp_path / "state" / "timer.stamp"
            stamp_file.touch()
            os.utime(stamp_file, (stamp.timestamp(), stamp.timestamp()))
        notify = Sink(tmp_path / f"notify-{len(harnesses)}.sock")
        sink = Sink(tmp_path / f"journal-{len(harnesses)}.sock")
        fake = fake or FakeEngine()
        pruned: list[str] = []

        def pruner(url: str) -> PruneReport:
            pruned.append(url)
            return PruneReport(deleted=("sha256:old",), reclaimed=1234)

        daemon = Daemon(
            config_mod.load(path),
            run_func=fake,
            options_factory=lambda settings: settings,
            notifier=Notifier(str(notify.path), watchdog_usec=watchdog_usec),
            journal=journal.Journal(sink.path),
            pruner=pruner,
            install_signals=install_signals,
            manage_logging=False,
        )
        task = asyncio.create_task(daemon.serve())
        harness = Harness(daemon, task, fake, notify, sink, path, pruned)
        harnesses.append(harness)
        await wait_for(lambda: any("READY" in n for n in notify.drain()) or task.done(), what="READY=1")
        assert not task.done(), task.result()
        return harness

    yield starter
    for harness in harnesses:
        if not harness.task.done():
            harness.daemon.stop()
            await asyncio.wait_for(harness.task, 30)
        harness.notify.close()
        harness.journal.close()


# -- start-up -------------------------------------------------------------------------------


async def test_ready_with_a_status_line_naming_the_next_run(start: Starter) -> None:
    h = await start('schedule = "0 3 * * *"\n')
    ready = next(n for n in h.notifications() if "READY" in n)
    assert ready["MAINPID"] == str(os.getpid())
    next_run = h.daemon.next_run_time()
    assert next_run is not None and next_run.astimezone(h.daemon.tz).strftime("%H:%M") == "03:00"
    assert ready["STATUS"].startswith("Idle; next run ")
    assert "03:00:00" in ready["STATUS"] and "last run: none yet" in ready["STATUS"]
    started = h.entries(journal.MESSAGE_ID_DAEMON)
    assert started and started[0]["MESSAGE"].startswith("Started")
    assert h.fake.calls == []  # nothing runs at start unless asked


async def test_interval_schedule_runs_and_status_reports_the_last_run(start: Starter) -> None:
    h = await start('schedule = "every 1s"\n')
    await wait_for(lambda: h.fake.finished >= 2, timeout=5, what="two scheduled runs")
    await wait_for(lambda: h.daemon.runs_completed >= 2)
    runs = h.entries(journal.MESSAGE_ID_RUN)
    assert [r["REASON"] for r in runs[:2]] == ["schedule", "schedule"]
    assert runs[0]["PRIORITY"] == str(journal.INFO) and runs[0]["RESULT"] == "ok"
    assert runs[0]["MESSAGE"].startswith("Run 1 (schedule): 1 containers: 0 updated, 1 unchanged")
    status = [n["STATUS"] for n in h.notifications() if "STATUS" in n]
    assert any(s.startswith("Running run 1 (schedule)") for s in status)
    assert any("last run" in s and "1 unchanged" in s and "next run" in s for s in status)
    reply = await h.request({"command": "status"})
    assert reply["ok"] and reply["daemon"]["schedule"] == "every 1s"
    assert reply["last_run"]["entries"][0]["container_name"] == "web"
    assert datetime.fromisoformat(reply["next_run"]) > datetime.now(UTC) - timedelta(seconds=1)
    saved = h.daemon.state.read_last_run()
    assert saved is not None and saved["run"] >= 2


async def test_runs_never_overlap_and_triggers_during_a_run_merge_into_one(start: Starter) -> None:
    fake = FakeEngine(duration=1.0)
    h = await start('schedule = "every 1s"\n', fake=fake)
    await wait_for(lambda: fake.active == 1, timeout=5, what="the first run")
    replies = [await h.request({"command": "trigger"}) for _ in range(3)]
    assert {r["accepted"] for r in replies} == {"queued"}
    assert len({r["run"] for r in replies}) == 1, "all triggers during the run become one run"
    queued = replies[0]["run"]
    waited = await asyncio.wait_for(h.daemon.wait_for_run(queued), 10)
    assert waited["run"] == queued and "trigger" in waited["reason"]
    assert fake.max_active == 1
    # The scheduled fire that came during the runs merged too: no pile-up of runs.
    assert h.daemon.runs_completed <= 3


async def test_trigger_when_idle_starts_at_once_and_wait_returns_the_outcome(start: Starter) -> None:
    fake = FakeEngine(outcome=Status.UPDATED)
    h = await start("", fake=fake)
    reply = await h.request({"command": "trigger", "wait": True})
    assert reply["ok"] and reply["accepted"] == "started"
    assert reply["result"]["entries"][0]["updated"] == "true"
    summary = h.entries(journal.MESSAGE_ID_RUN)[0]
    assert summary["PRIORITY"] == str(journal.NOTICE), "an update is a notice"
    assert summary["UPDATED"] == "1" and summary["REASON"] == "trigger"
    # A run that updated something prunes dangling images on the podman URL in use.
    assert h.pruned == [h.daemon.settings.podman_url or "unix:///run/podman/podman.sock"]
    assert "pruned 1 dangling images" in summary["MESSAGE"]


async def test_no_prune_without_updates_or_in_dry_run(start: Starter) -> None:
    h = await start("dry_run = true\n", fake=FakeEngine(outcome=Status.PENDING))
    await h.request({"command": "trigger", "wait": True})
    assert h.pruned == []
    assert h.fake.calls[0].dry_run is True


async def test_a_failed_run_is_an_error_with_the_errors(start: Starter) -> None:
    h = await start("", fake=FakeEngine(outcome=Status.FAILED))
    reply = await h.request({"command": "trigger", "wait": True})
    assert reply["result"]["ok"] is False
    summary = h.entries(journal.MESSAGE_ID_RUN)[0]
    assert summary["PRIORITY"] == str(journal.ERR) and summary["RESULT"] == "failed"
    assert "container-web.service during update: boom" in summary["MESSAGE"]


async def test_unreachable_podman_fails_that_run_only(start: Starter) -> None:
    fake = FakeEngine(raise_error=engine.RunError("cannot reach the podman service at unix:///x: refused"))
    h = await start("", fake=fake)
    reply = await h.request({"command": "trigger", "wait": True})
    assert reply["result"]["ok"] is False
    failed = h.entries(journal.MESSAGE_ID_RUN_FAILED)
    assert len(failed) == 1 and failed[0]["PRIORITY"] == str(journal.ERR)
    assert "cannot reach the podman service" in failed[0]["MESSAGE"] and "next run" in failed[0]["MESSAGE"]
    assert "FAILED: cannot reach" in h.daemon.status_line()
    fake.raise_error = None
    reply = await h.request({"command": "trigger", "wait": True})
    assert reply["result"]["ok"] is True, "the next run retries and works"
    assert not h.task.done()


async def test_an_unexpected_crash_in_a_run_does_not_stop_the_daemon(start: Starter) -> None:
    h = await start("", fake=FakeEngine(raise_error=KeyError("bug")))
    reply = await h.request({"command": "trigger", "wait": True})
    assert "unexpected KeyError" in reply["result"]["error"]
    entry = h.entries(journal.MESSAGE_ID_RUN_FAILED)[0]
    assert "Traceback" in entry["TRACEBACK"]
    assert not h.task.done()


# -- reload ---------------------------------------------------------------------------------


async def test_reload_applies_a_new_schedule_and_filters(start: Starter) -> None:
    h = await start('schedule = "0 3 * * *"\n')
    h.notifications()
    text = h.config_path.read_text().replace('schedule = "0 3 * * *"', 'schedule = "every 1s"')
    h.config_path.write_text(text + 'include_containers = ["web*"]\n')
    assert await h.daemon.reload()
    messages = h.notifications()
    assert "RELOADING" in messages[0] and int(messages[0]["MONOTONIC_USEC"]) > 0
    assert "READY" in messages[-1]
    reloaded = h.entries(journal.MESSAGE_ID_CONFIG)
    assert reloaded[-1]["RESULT"] == "reloaded"
    assert reloaded[-1]["CHANGED"] == "schedule,include_containers"
    await wait_for(lambda: h.fake.finished >= 1, timeout=5, what="a run on the new schedule")
    assert h.fake.calls[0].include_containers == ["web*"]


async def test_reload_with_a_broken_file_keeps_the_old_config(start: Starter) -> None:
    h = await start('schedule = "0 3 * * *"\n')
    before = h.daemon.next_run_time()
    h.config_path.write_text(h.config_path.read_text() + "restart_timeout = -1\n")
    assert not await h.daemon.reload()
    error = h.entries(journal.MESSAGE_ID_CONFIG)[-1]
    assert error["PRIORITY"] == str(journal.ERR) and error["RESULT"] == "rejected"
    assert "key 'restart_timeout': must be greater than 0" in error["MESSAGE"]
    assert str(h.config_path) in error["MESSAGE"]
    assert h.daemon.settings.restart_timeout == 300 and h.daemon.next_run_time() == before
    messages = h.notifications()
    assert "RELOADING" in messages[-2] and "READY" in messages[-1]
    assert "last reload rejected" in messages[-1]["STATUS"]


async def test_sighup_reloads_and_sigusr1_triggers(start: Starter) -> None:
    h = await start('schedule = "0 3 * * *"\n', install_signals=True)
    h.config_path.write_text(h.config_path.read_text() + "dry_run = true\n")
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: h.daemon.settings.dry_run, what="the reload from SIGHUP")
    os.kill(os.getpid(), signal.SIGUSR1)
    await wait_for(lambda: h.fake.finished == 1, what="the run from SIGUSR1")
    assert h.fake.calls[0].dry_run is True


# -- stop -----------------------------------------------------------------------------------


async def test_sigterm_during_a_run_stops_new_work_and_waits_for_it(start: Starter) -> None:
    fake = FakeEngine(duration=30)
    h = await start("", fake=fake, install_signals=True)
    await h.request({"command": "trigger"})
    await wait_for(lambda: fake.active == 1, what="the run")
    queued = await h.request({"command": "trigger"})
    assert queued["accepted"] == "queued"
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(h.task, 10) == 0
    assert fake.stop_seen == [True], "the engine saw the stop event and its run finished"
    assert len(fake.calls) == 1, "the queued run never started"
    stopping = [n for n in h.notifications() if "STOPPING" in n]
    assert stopping and "waiting for the run in progress" in stopping[0]["STATUS"]
    assert h.entries(journal.MESSAGE_ID_RUN)[0]["RESULT"] == "ok"
    assert not h.daemon.socket_path.exists()


async def test_stop_is_bounded_by_stop_timeout(start: Starter) -> None:
    fake = FakeEngine(duration=60, ignore_stop=True)
    h = await start("stop_timeout = 0.5\n", fake=fake)
    await h.request({"command": "trigger"})
    await wait_for(lambda: fake.active == 1, what="the run")
    h.daemon.stop()
    assert await asyncio.wait_for(h.task, 10) == 0
    errors = [e for e in h.entries() if e.get("PRIORITY") == str(journal.ERR)]
    assert any("did not finish within stop_timeout" in e["MESSAGE"] for e in errors)


# -- catch-up (Persistent=true) -------------------------------------------------------------


async def test_first_start_writes_the_stamp_and_runs_nothing(start: Starter, tmp_path: Path) -> None:
    h = await start('schedule = "every 1h"\n')
    assert (tmp_path / "state" / "timer.stamp").exists()
    await asyncio.sleep(0.3)
    assert h.fake.calls == []


async def test_a_missed_run_is_caught_up_once(start: Starter, tmp_path: Path) -> None:
    h = await start('schedule = "every 1h"\n', stamp=datetime.now(UTC) - timedelta(hours=3))
    await wait_for(lambda: h.fake.finished == 1, what="the catch-up run")
    await asyncio.sleep(0.5)
    assert h.fake.finished == 1, "three missed runs are caught up by one"
    assert h.entries(journal.MESSAGE_ID_RUN)[0]["REASON"] == "catch-up"
    missed = [e for e in h.entries() if "MISSED_RUN" in e]
    assert len(missed) == 1
    stamp = datetime.fromtimestamp((tmp_path / "state" / "timer.stamp").stat().st_mtime, UTC)
    assert datetime.now(UTC) - stamp < timedelta(seconds=10), "the stamp moves on"


async def test_a_stamp_after_the_last_due_time_means_no_catch_up(start: Starter) -> None:
    h = await start('schedule = "every 1h"\n', stamp=datetime.now(UTC) - timedelta(minutes=30))
    await asyncio.sleep(0.3)
    assert h.fake.calls == []


async def test_persistent_false_skips_the_catch_up(start: Starter) -> None:
    h = await start('schedule = "every 1h"\npersistent = false\n', stamp=datetime.now(UTC) - timedelta(hours=3))
    await asyncio.sleep(0.3)
    assert h.fake.calls == []


async def test_run_on_start_absorbs_the_catch_up(start: Starter) -> None:
    h = await start('schedule = "every 1h"\nrun_on_start = true\n', stamp=datetime.now(UTC) - timedelta(hours=3))
    await wait_for(lambda: h.fake.finished == 1, what="the start run")
    await asyncio.sleep(0.3)
    assert h.fake.finished == 1
    assert h.entries(journal.MESSAGE_ID_RUN)[0]["REASON"] == "start, catch-up"


# -- watchdog, control protocol ---------------------------------------------------------------


async def test_watchdog_pings_at_half_the_interval(start: Starter) -> None:
    h = await start("", watchdog_usec=400_000)
    h.notifications()
    await asyncio.sleep(1.05)
    pings = [n for n in h.notifications() if n.get("WATCHDOG") == "1"]
    assert 3 <= len(pings) <= 7, len(pings)


async def test_bad_control_requests_get_an_error_answer(start: Starter) -> None:
    h = await start("")
    assert (await h.request({"command": "explode"}))["ok"] is False
    raw = await asyncio.to_thread(_raw_exchange, h.daemon.socket_path, b"not json\n")
    assert b'"ok": false' in raw and b"bad request" in raw
    assert not h.task.done()


def _raw_exchange(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(data)
        return sock.recv(65536)


async def test_the_control_socket_is_private(start: Starter) -> None:
    h = await start("")
    assert (h.daemon.socket_path.stat().st_mode & 0o777) == 0o600


async def test_a_second_daemon_on_the_same_socket_refuses_to_start(start: Starter, tmp_path: Path) -> None:
    h = await start("")
    other = Daemon(
        config_mod.load(h.config_path),
        run_func=FakeEngine(),
        options_factory=lambda s: s,
        notifier=Notifier(""),
        journal=journal.Journal(tmp_path / "nojournal"),
        install_signals=False,
        manage_logging=False,
    )
    assert await asyncio.wait_for(other.serve(), 10) == 1
    assert h.daemon.socket_path.exists(), "the running daemon's socket is left alone"
    assert (await h.request({"command": "status"}))["ok"]
