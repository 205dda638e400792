"""`autoupdated run` as a real process: signals, sd_notify, exit codes, and what idling costs.

The real engine runs against a podman socket that does not exist, so every run fails the way
an unreachable podman fails in production; the daemon must keep going.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoupdated.adapters import journal
from tests.harness.sinks import parse_datagram

REPO = Path(__file__).resolve().parents[3]


class Collector:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.items: list[dict[str, str]] = []

    def wait(self, predicate, timeout: float = 15, what: str = "message") -> dict[str, str]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for item in self.items[seen:]:
                if predicate(item):
                    return item
            seen = len(self.items)
            with contextlib.suppress(TimeoutError):
                self.items.append(parse_datagram(self.sock.recv(1 << 20)))
        raise AssertionError(f"no {what} within {timeout}s; got {self.items}")

    def drain(self) -> list[dict[str, str]]:
        self.sock.setblocking(False)
        try:
            while True:
                self.items.append(parse_datagram(self.sock.recv(1 << 20)))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.1)
        return self.items


class Proc:
    def __init__(self, tmp: Path, toml: str, extra_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.config = tmp / "autoupdated.toml"
        self.config.write_text(
            f'state_dir = "{tmp}/state"\ncontrol_socket = "{tmp}/control.sock"\nrandomized_delay = 0\n'
            f'podman_url = "unix://{tmp}/no-podman.sock"\n{toml}'
        )
        self.notify = Collector(tmp / "notify.sock")
        self.journal = Collector(tmp / "journal.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOUPDATED_", "NOTIFY_", "WATCHDOG_"))}
        env.update(
            NOTIFY_SOCKET=str(tmp / "notify.sock"),
            AUTOUPDATED_JOURNAL_SOCKET=str(tmp / "journal.sock"),
            DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp}/no-bus",
        )
        env.update(extra_env or {})
        self.env = env
        self.stderr = open(tmp / "stderr", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autoupdated", "run", "--config", str(self.config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "autoupdated", *args, "--config", str(self.config)],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stderr.close()
        self.notify.sock.close()
        self.journal.sock.close()


@pytest.fixture
def daemon_proc(tmp_path: Path) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.close()


def _switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_lifecycle_of_the_real_process(tmp_path: Path, daemon_proc: list[Proc]) -> None:
    p = Proc(tmp_path, 'schedule = "daily"\n')
    daemon_proc.append(p)
    ready = p.notify.wait(lambda m: "READY" in m, what="READY=1")
    assert ready["MAINPID"] == str(p.proc.pid) and "next run" in ready["STATUS"]

    # Idle: nothing wakes the process up (no polling); it stays small.
    time.sleep(0.5)
    before = _switches(p.proc.pid)
    time.sleep(3)
    wakeups = _switches(p.proc.pid) - before
    rss = _rss_kib(p.proc.pid)
    print(f"\nidle: {wakeups} context switches in 3 s; VmRSS {rss / 1024:.1f} MiB")
    assert wakeups <= 3
    assert rss < 60 * 1024

    # A run with podman unreachable fails cleanly; the daemon goes on.
    r = p.cli("trigger", "--wait")
    assert r.returncode == 1 and "cannot reach the podman service" in r.stdout, r
    failed = p.journal.wait(lambda e: e.get("MESSAGE_ID") == journal.MESSAGE_ID_RUN_FAILED, what="run failure")
    assert failed["PRIORITY"] == "3" and "no-podman.sock" in failed["MESSAGE"]
    rss_after_run = _rss_kib(p.proc.pid)
    print(f"VmRSS after a run (engine loaded): {rss_after_run / 1024:.1f} MiB")
    assert rss_after_run < 60 * 1024
    r = p.cli("status", "--format", "json")
    status = json.loads(r.stdout)
    assert status["daemon"]["pid"] == p.proc.pid and status["last_run"]["ok"] is False
    r = p.cli("status")
    assert "Daemon:   running" in r.stdout and "Last run: Run 1 (trigger)" in r.stdout

    # SIGHUP with a broken file: rejected, old config stays, still ready.
    p.config.write_text(p.config.read_text() + "bogus = 1\n")
    p.proc.send_signal(signal.SIGHUP)
    rejected = p.journal.wait(lambda e: e.get("RESULT") == "rejected", what="rejected reload")
    assert "unknown key 'bogus'" in rejected["MESSAGE"]
    p.notify.wait(lambda m: "RELOADING" in m, what="RELOADING=1")
    p.notify.wait(lambda m: "READY" in m and "reload rejected" in m.get("STATUS", ""), what="READY after reload")

    p.config.write_text(p.config.read_text().replace("bogus = 1\n", ""))

    # SIGTERM: STOPPING=1 and exit 0.
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0
    p.notify.wait(lambda m: "STOPPING" in m, what="STOPPING=1")
    r = p.cli("status")
    assert "Daemon:   not running" in r.stdout and "Run 1 (trigger)" in r.stdout, "read from the state file"
    p.stderr.seek(0)
    assert "Traceback" not in p.stderr.read()


def test_watchdog_from_the_environment(tmp_path: Path, daemon_proc: list[Proc]) -> None:
    p = Proc(tmp_path, "", {"WATCHDOG_USEC": "1000000"})
    daemon_proc.append(p)
    p.notify.wait(lambda m: "READY" in m, what="READY=1")
    time.sleep(2.2)
    pings = [m for m in p.notify.drain() if m.get("WATCHDOG") == "1"]
    assert 3 <= len(pings) <= 6, pings
