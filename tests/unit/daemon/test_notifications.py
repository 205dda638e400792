"""Notifications from the real daemon object (fake engine) to real receivers on 127.0.0.1:
Apprise json:// and form:// to an HTTP server, mailto:// to aiosmtpd."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autoupdated import engine
from autoupdated.adapters import journal
from autoupdated.model import Status
from tests.harness.receivers import HttpReceiver, SmtpReceiver
from tests.harness.sinks import wait_for
from tests.unit.daemon.test_service import Starter

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
NEWER = "sha256:" + "3" * 64
SECRET = "hunter2-s3cret-token"


@dataclass
class Scripted:
    """The engine's run: each call returns the next list of (container, status, new digest, error)."""

    runs: list[list[tuple[str, Status, str, str | None]]]
    calls: int = 0
    finished: int = 0
    calls_seen: list[Any] = field(default_factory=list)

    async def __call__(self, options: Any, *, stop: asyncio.Event | None = None) -> engine.RunResult:
        script = self.runs[min(self.calls, len(self.runs) - 1)]
        self.calls += 1
        result = engine.RunResult()
        for name, status, digest, error in script:
            result.entries.append(
                engine.Entry(
                    unit=f"container-{name}.service",
                    container_id=name[0] * 64,
                    container_name=name,
                    image=f"registry.test/{name}:latest",
                    policy="registry",
                    updated=status,
                    old_digest=OLD,
                    new_digest=digest,
                    error=error,
                )
            )
            if status is Status.FAILED:
                result.errors.append(f"restarting unit container-{name}.service during update: {error}")
        self.finished += 1
        return result


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def notify_toml(url: str, extra: str = "") -> str:
    return f'[[notify]]\nname = "ops"\nurl = "{url}"\n{extra}'


async def run_once(h: Any) -> dict[str, Any]:
    reply = await h.request({"command": "trigger", "wait": True})
    await h.daemon.notifications.drain(10)  # the sends after the run
    return reply


async def test_a_run_sends_one_message_grouping_its_containers_to_a_json_target(
    start: Starter, http: HttpReceiver
) -> None:
    fake = Scripted(
        [
            [
                ("web", Status.UPDATED, NEW, None),
                ("db", Status.FAILED, NEW, "unit entered failed state"),
                ("cache", Status.NOT_UPDATED, OLD, None),
            ]
        ]
    )
    url = f"json://bot:{SECRET}@127.0.0.1:{http.port}/hook"
    h = await start(notify_toml(url, 'events = ["updated", "failed", "rolled_back"]\n'), fake=fake)
    await run_once(h)
    received = await http.arrived(1)
    assert len(received) == 1, "one message per run and target"
    message = received[0].json()
    print(f"received by the json:// receiver at {received[0].path}:\n{received[0].body.decode()}")
    assert message["type"] == "failure"
    assert message["title"].endswith(": 1 failed, 1 updated")
    body = message["message"]
    assert "FAILED: db (container-db.service)" in body
    assert "cause: unit entered failed state" in body
    assert "journalctl -u container-db.service" in body and "autoupdated rollback db" in body
    assert "UPDATED: web (container-web.service)" in body and "image: registry.test/web:latest" in body
    assert "digest: sha256:111111111111 -> sha256:222222222222" in body
    assert "cache" not in body, "an unchanged container is not news"
    assert NEW not in body, "digests are short on a phone"


async def test_a_state_is_told_once_across_runs_and_again_when_it_changes(start: Starter, http: HttpReceiver) -> None:
    fake = Scripted(
        [
            [("web", Status.PENDING, NEW, None)],
            [("web", Status.PENDING, NEW, None)],
            [("web", Status.PENDING, NEWER, None)],
        ]
    )
    h = await start(
        "dry_run = true\n" + notify_toml(f"form://127.0.0.1:{http.port}/f", 'events = ["update_available"]\n'),
        fake=fake,
    )
    await run_once(h)
    await run_once(h)
    assert len(await http.arrived(1)) == 1
    await asyncio.sleep(0.2)
    assert len(http.received) == 1, "the same pending update is not announced at every run"
    await run_once(h)
    second = (await http.arrived(2))[1].form()
    assert "UPDATE AVAILABLE: web" in second["message"] and "sha256:333333333333" in second["message"]
    assert second["type"] == "info"


async def test_what_was_told_survives_a_daemon_restart(start: Starter, http: HttpReceiver) -> None:
    fake = Scripted([[("web", Status.ROLLED_BACK, NEW, "health check failed")]])
    toml = notify_toml(f"json://127.0.0.1:{http.port}/hook", 'events = ["rolled_back", "daemon"]\n')
    first = await start(toml, fake=fake)
    await run_once(first)
    await http.arrived(2)  # started, then the run's
    first.daemon.stop()
    await asyncio.wait_for(first.task, 10)
    messages = len(http.received)  # the daemon's own stopping message among them
    second = await start(toml, fake=fake)
    await run_once(second)
    await asyncio.sleep(0.2)
    assert sum("ROLLED BACK: web" in r.json()["message"] for r in http.received[:messages]) == 1
    told = [r.json()["title"] for r in http.received[messages:]]
    assert not any("rolled back" in title for title in told), told


async def test_a_container_back_to_normal_is_told_again_when_it_fails_again(start: Starter, http: HttpReceiver) -> None:
    failing = [("web", Status.FAILED, NEW, "boom")]
    fake = Scripted([failing, [("web", Status.NOT_UPDATED, OLD, None)], failing])
    h = await start(notify_toml(f"json://127.0.0.1:{http.port}/hook", 'events = ["failed"]\n'), fake=fake)
    for _ in range(3):
        await run_once(h)
    assert len(await http.arrived(2)) == 2


async def test_mail_through_a_local_smtp_server(start: Starter) -> None:
    smtp = SmtpReceiver("bob", SECRET).start()
    try:
        url = f"mailto://bob:{SECRET}@127.0.0.1:{smtp.port}?mode=insecure&from=auto@example.com&to=ops@example.com"
        h = await start(
            notify_toml(url, 'events = ["updated"]\n'), fake=Scripted([[("web", Status.UPDATED, NEW, None)]])
        )
        await run_once(h)
        mail = (await smtp.arrived(1))[0]
        assert smtp.logins == ["bob"]
        assert mail["To"] == "ops@example.com" and mail["Subject"].endswith(": 1 updated")
        text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        print(f"mail received by aiosmtpd:\nSubject: {mail['Subject']}\n{text}")
        assert "UPDATED: web (container-web.service)" in text
    finally:
        smtp.stop()


async def test_container_and_unit_filters_choose_what_a_target_hears(start: Starter, http: HttpReceiver) -> None:
    fake = Scripted([[("web", Status.UPDATED, NEW, None), ("db", Status.UPDATED, NEW, None)]])
    h = await start(
        notify_toml(f"json://127.0.0.1:{http.port}/hook", 'events = ["updated"]\ncontainers = ["we*"]\n'), fake=fake
    )
    await run_once(h)
    body = (await http.arrived(1))[0].json()["message"]
    assert "web" in body and "db" not in body


async def test_a_failed_send_never_fails_the_run_is_logged_without_secrets_and_counted(
    start: Starter, http: HttpReceiver, capfd: pytest.CaptureFixture[str]
) -> None:
    http.status = 500
    url = f"json://bot:{SECRET}@127.0.0.1:{http.port}/hook/{SECRET}x?token={SECRET}y"
    h = await start(
        'log_level = "debug"\nnotify_retries = 1\n' + notify_toml(url, 'events = ["updated"]\n'),
        fake=Scripted([[("web", Status.UPDATED, NEW, None)]]),
    )
    reply = await run_once(h)
    assert reply["result"]["ok"] is True
    assert len(await http.arrived(2)) >= 2, "bounded retries: one more try"
    entries = h.entries()
    failed = [e for e in entries if e.get("NOTIFY_TARGET") == "ops" and e.get("RESULT") == "failed"]
    assert failed and "json://127.0.0.1:" in failed[0]["MESSAGE"] and "after 2 tries" in failed[0]["MESSAGE"]
    journal_text = repr(entries)
    assert SECRET not in journal_text and "bot:" not in journal_text
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    metrics = h.daemon.telemetry.metrics.text().decode()
    assert 'autoupdated_notifications_total{result="failed",target="ops"} 1.0' in metrics
    status = await h.request({"command": "status"})
    assert SECRET not in repr(status)


async def test_daemon_events_tell_start_stop_and_a_rejected_reload(start: Starter, http: HttpReceiver) -> None:
    h = await start(notify_toml(f"json://127.0.0.1:{http.port}/hook", 'events = ["daemon"]\n'))
    assert "started" in (await http.arrived(1))[0].json()["title"]
    h.config_path.write_text(h.config_path.read_text() + "restart_timeout = -1\n")
    assert not await h.daemon.reload()
    rejected = (await http.arrived(2))[1].json()
    assert "configuration rejected" in rejected["title"] and "restart_timeout" in rejected["message"]
    h.daemon.stop()
    await asyncio.wait_for(h.task, 10)
    assert "stopping" in (await http.arrived(3))[2].json()["title"]


async def test_reload_applies_new_targets(start: Starter, http: HttpReceiver) -> None:
    other = HttpReceiver().start()
    try:
        fake = Scripted([[("web", Status.UPDATED, NEW, None)], [("web", Status.UPDATED, NEWER, None)]])
        h = await start(notify_toml(f"json://127.0.0.1:{http.port}/hook", 'events = ["updated"]\n'), fake=fake)
        await run_once(h)
        h.config_path.write_text(h.config_path.read_text().replace(f"127.0.0.1:{http.port}", f"127.0.0.1:{other.port}"))
        assert await h.daemon.reload()
        await run_once(h)
        assert len(http.received) == 1 and len(await other.arrived(1)) == 1
    finally:
        other.stop()


async def test_a_run_level_error_is_an_error_event(start: Starter, http: HttpReceiver) -> None:
    fake = Scripted([[]])
    h = await start(notify_toml(f"json://127.0.0.1:{http.port}/hook", 'events = ["error"]\n'), fake=fake)

    async def broken(options: Any, *, stop: asyncio.Event | None = None) -> engine.RunResult:
        raise engine.RunError("cannot reach the podman service at unix:///x: refused")

    h.daemon.runs.run_func = broken
    await run_once(h)
    message = (await http.arrived(1))[0].json()
    assert "RUN ERROR" in message["message"] and "cannot reach the podman service" in message["message"]
    assert "journalctl -u autoupdated" in message["message"]


def test_notify_test_reports_each_target_and_fails_if_any_failed(
    tmp_path: Any, http: HttpReceiver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoupdated.cli import main

    config = tmp_path / "autoupdated.toml"
    config.write_text(
        f'notify_retries = 0\nnotify_timeout = 2\n[[notify]]\nname = "good"\nurl = "json://u:{SECRET}@127.0.0.1:{http.port}/h"\n'
        f'[[notify]]\nname = "bad"\nurl = "json://u:{SECRET}@127.0.0.1:1/h"\n'
    )
    monkeypatch.setattr(sys, "argv", ["autoupdated"])
    code = main(["notify", "test", "--config", str(config)])
    out, err = capsys.readouterr()
    print(out)
    assert code == 1
    assert f"good: json://127.0.0.1:{http.port}/***: sent" in out
    assert "bad: json://127.0.0.1:1/***: FAILED after 1 tries" in out
    assert SECRET not in out + err
    assert "test notification" in http.wait(1)[0].json()["title"]
    await_none = journal  # the CLI writes no journal entry of its own
    assert await_none is not None


async def test_notifications_wait_for_nothing_when_no_target_is_configured(start: Starter) -> None:
    h = await start("", fake=Scripted([[("web", Status.UPDATED, NEW, None)]]))
    await run_once(h)
    await wait_for(lambda: h.daemon.runs_completed == 1)
    assert not h.daemon.notifications._pending


async def test_an_apprise_config_file_delivers_to_the_targets_it_lists(
    start: Starter, http: HttpReceiver, tmp_path: Path
) -> None:
    """Apprise users keep their targets in an apprise.yml: `config = PATH` in a [[notify]] entry."""
    apprise_yml = tmp_path / "apprise.yml"
    apprise_yml.write_text(f"version: 1\nurls:\n  - json://bot:{SECRET}@127.0.0.1:{http.port}/from-yaml\n")
    fake = Scripted([[("web", Status.UPDATED, NEW, None)]])
    toml = f'[[notify]]\nname = "from-yaml"\nconfig = "{apprise_yml}"\nevents = ["updated"]\n'
    h = await start(toml, fake=fake)
    await run_once(h)
    received = await http.arrived(1)
    assert [r.path for r in received] == ["/from-yaml"]
    assert "UPDATED: web (container-web.service)" in received[0].json()["message"]
    status = json.dumps(h.daemon.status())
    assert SECRET not in status
