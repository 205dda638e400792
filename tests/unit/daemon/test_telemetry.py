"""/metrics, /api/v1/status and /api/v1/history served by the real daemon object (fake engine),
scraped over real HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoupdated.adapters.history import History
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.model import Entry, Status
from autoupdated.reference import parse
from tests.harness.receivers import free_port
from tests.harness.registry import FakeRegistry
from tests.unit.adapters.registry.test_backoff import MANIFEST, PATH, REPOS, Clock, answers, passthrough, too_many
from tests.unit.daemon.test_notifications import NEW, OLD, Scripted, run_once
from tests.unit.daemon.test_service import Starter


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


async def fetch(url: str, method: str = "GET") -> tuple[int, str, str]:
    return await asyncio.to_thread(get, url, method)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


RUN = [
    ("web", Status.UPDATED, NEW, None),
    ("db", Status.PENDING, NEW, None),
    ("cache", Status.NOT_UPDATED, OLD, None),
    ("api", Status.FAILED, NEW, "boom"),
]


async def test_metrics_scraped_over_http_match_the_runs_report(start: Starter, tmp_path: Path) -> None:
    port = free_port()
    textfile = tmp_path / "textfile" / "autoupdated.prom"
    textfile.parent.mkdir()
    h = await start(
        f'schedule = "0 3 * * *"\nmetrics_listen = "127.0.0.1:{port}"\nmetrics_textfile = "{textfile}"\n',
        fake=Scripted([RUN]),
    )
    reply = await run_once(h)
    status, content_type, text = await fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    print(
        "scrape:\n"
        + "\n".join(line for line in text.splitlines() if line.startswith("autoupdated_") and "_created" not in line)
    )
    found = samples(text)
    assert found[("autoupdated_runs_total", (("outcome", "failed"),))] == 1  # a failed container fails the run
    assert found[("autoupdated_run_duration_seconds_count", ())] == 1
    for name, policy_status in [("true", 1), ("false", 1), ("pending", 1), ("failed", 1)]:
        assert found[("autoupdated_containers", (("policy", "registry"), ("status", name)))] == policy_status
    assert found[("autoupdated_update_available", (("container", "db"), ("unit", "container-db.service")))] == 1
    assert found[("autoupdated_update_available", (("container", "web"), ("unit", "container-web.service")))] == 0
    assert found[("autoupdated_updates_total", ())] == 1
    assert found[("autoupdated_failures_total", ())] == 1
    assert found[("autoupdated_rollbacks_total", ())] == 0
    checked = {labels for (name, labels) in found if name == "autoupdated_last_successful_check_timestamp_seconds"}
    assert (("container", "api"), ("unit", "container-api.service")) not in checked, "a failed check is not a success"
    finished = reply["result"]["finished"]
    from datetime import datetime

    stamp = found[
        (
            "autoupdated_last_successful_check_timestamp_seconds",
            (("container", "web"), ("unit", "container-web.service")),
        )
    ]
    assert abs(stamp - datetime.fromisoformat(finished).timestamp()) < 1
    next_run = h.daemon.next_run_time()
    assert next_run is not None and found[("autoupdated_next_run_timestamp_seconds", ())] == next_run.timestamp()
    assert not any("sha256" in str(labels) for (_, labels) in found), "no digest as a label"
    # The node_exporter textfile, written after the run (atomically: nothing else in its directory).
    assert [p.name for p in textfile.parent.iterdir()] == ["autoupdated.prom"]
    assert samples(textfile.read_text())[("autoupdated_updates_total", ())] == 1


async def test_status_and_history_are_served_as_json_read_only(start: Starter, tmp_path: Path) -> None:
    port = free_port()
    h = await start(f'metrics_listen = "127.0.0.1:{port}"\n', fake=Scripted([RUN]))
    await run_once(h)
    with History(tmp_path / "state" / "history.db") as history:
        record = history.intent(
            "container-web.service",
            [
                Entry(
                    "container-web.service",
                    "w" * 64,
                    "web",
                    "registry.test/web:latest",
                    "registry",
                    Status.UPDATED,
                    OLD,
                    NEW,
                )
            ],
        )
        history.outcome(
            record,
            [
                Entry(
                    "container-web.service",
                    "w" * 64,
                    "web",
                    "registry.test/web:latest",
                    "registry",
                    Status.UPDATED,
                    OLD,
                    NEW,
                )
            ],
        )
    code, content_type, text = await fetch(f"http://127.0.0.1:{port}/api/v1/status")
    assert code == 200 and content_type == "application/json"
    status = json.loads(text)
    control = await h.request({"command": "status"})
    assert status.keys() == control.keys()
    assert status["daemon"]["state"] == "idle" and status["next_run"] == control["next_run"]
    assert {e["container_name"]: e["updated"] for e in status["last_run"]["entries"]}["db"] == "pending"
    assert status["updates_waiting"] == ["db"]
    code, _, text = await fetch(f"http://127.0.0.1:{port}/api/v1/history?limit=5")
    rows = json.loads(text)
    assert code == 200 and rows[0]["container_name"] == "web" and rows[0]["result"] == "true"
    assert (await fetch(f"http://127.0.0.1:{port}/api/v1/trigger"))[0] == 404
    assert (await fetch(f"http://127.0.0.1:{port}/api/v1/status", "POST"))[0] == 405
    assert (await fetch(f"http://127.0.0.1:{port}/metrics", "DELETE"))[0] == 405
    assert h.daemon.runs_completed == 1, "nothing over HTTP starts a run"


async def test_oversized_or_silent_requests_are_cut_off(start: Starter) -> None:
    port = free_port()
    await start(f'metrics_listen = "127.0.0.1:{port}"\n')

    def oversized() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
            return sock.recv(100)

    assert (await asyncio.to_thread(oversized)).startswith(b"HTTP/1.1 431")


async def test_a_unix_socket_listener(start: Starter, tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    await start(f'metrics_listen = "{path}"\n')

    def scrape() -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    data = await asyncio.to_thread(scrape)
    assert data.startswith(b"HTTP/1.1 200") and b"autoupdated_next_run_timestamp_seconds" in data


async def test_reload_moves_the_listener_and_keeps_the_old_one_when_the_new_cannot_bind(start: Starter) -> None:
    first, second = free_port(), free_port()
    h = await start(f'metrics_listen = "127.0.0.1:{first}"\n')
    text = h.config_path.read_text()
    h.config_path.write_text(text.replace(str(first), str(second)))
    h.entries()  # the journal stand-in holds few datagrams: read them as we go
    assert await h.daemon.reload()
    h.entries()
    assert (await fetch(f"http://127.0.0.1:{second}/metrics"))[0] == 200
    with pytest.raises(OSError):
        await fetch(f"http://127.0.0.1:{first}/metrics")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        h.config_path.write_text(text.replace(str(first), str(busy.getsockname()[1])))
        h.notifications()
        assert await h.daemon.reload(), "the rest of the configuration is taken"
        assert (await fetch(f"http://127.0.0.1:{second}/metrics"))[0] == 200, "the old listener keeps serving"
        errors = [e["MESSAGE"] for e in h.entries() if "cannot listen on" in e.get("MESSAGE", "")]
        assert (
            errors
            and errors[-1].startswith("metrics_listen = ")
            and f"still serving on 127.0.0.1:{second}" in errors[-1]
        )
    finally:
        busy.close()


async def test_registry_requests_and_rate_limit_waits_are_counted_in_one_place(start: Starter, tmp_path: Path) -> None:
    h = await start("")
    fake = FakeRegistry()
    fake.put(REPOS[0], "1.0", MANIFEST, "application/vnd.oci.image.manifest.v1+json")
    fake.override[("HEAD", PATH)] = answers(too_many("7"), passthrough(fake, PATH))
    clock = Clock()
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])
    async with RegistryClient(tls=tls, transport=fake.transport(), clock=clock, sleep=clock.sleep) as client:
        await client.head_manifest(parse(f"registry.test/{REPOS[0]}:1.0"), "1.0", None)
    found = samples(h.daemon.telemetry.metrics.text().decode())
    counted = {
        labels: value for (name, labels), value in found.items() if name == "autoupdated_registry_requests_total"
    }
    assert counted[(("method", "HEAD"), ("registry", "registry.test"), ("status", "429"))] == 1
    assert counted[(("method", "HEAD"), ("registry", "registry.test"), ("status", "200"))] == 1
    assert found[("autoupdated_registry_rate_limit_waits_total", (("registry", "registry.test"),))] == 1
    assert found[("autoupdated_registry_rate_limit_wait_seconds_total", (("registry", "registry.test"),))] == 7


def test_listen_addresses_are_checked() -> None:
    from autoupdated.notifyconf import Listen

    assert Listen.parse("127.0.0.1:9369") == Listen(host="127.0.0.1", port=9369)
    assert Listen.parse("[::1]:9369") == Listen(host="::1", port=9369)
    assert Listen.parse("/run/autoupdated/metrics.sock").path
    for bad in (":9369", "localhost", "127.0.0.1:0", "127.0.0.1:99999", "/" + "x" * 200):
        with pytest.raises(ValueError):
            Listen.parse(bad)


def _unused(*args: Any) -> None:
    return None
