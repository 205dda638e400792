"""The sd_notify protocol against real datagram sockets (filesystem and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoupdated.adapters.notify import Notifier, monotonic_usec, socket_address


class Listener:
    """What systemd's end of $NOTIFY_SOCKET sees: one datagram per notify call."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind = b"\0" + address[1:].encode() if address.startswith("@") else address
        self.sock.bind(bind)
        self.sock.settimeout(2)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(65536).decode()
        assert data.endswith("\n")
        return dict(line.split("=", 1) for line in data.splitlines())

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(2)
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    listener = Listener(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    listener = Listener(f"@autoupdated-test-{uuid.uuid4().hex}")
    yield listener
    listener.close()


def test_ready_status_and_stopping_over_a_filesystem_socket(path_listener: Listener) -> None:
    notifier = Notifier(path_listener.address, watchdog_usec=0)
    assert notifier.enabled
    assert notifier.ready("Idle; next run 2030-01-01 00:00:00 UTC")
    assert path_listener.receive() == {
        "READY": "1",
        "MAINPID": str(os.getpid()),
        "STATUS": "Idle; next run 2030-01-01 00:00:00 UTC",
    }
    assert notifier.stopping("Stopping")
    assert path_listener.receive() == {"STOPPING": "1", "STATUS": "Stopping"}
    notifier.close()


def test_abstract_namespace_address(abstract_listener: Listener) -> None:
    assert socket_address(abstract_listener.address) == b"\0" + abstract_listener.address[1:].encode()
    notifier = Notifier(abstract_listener.address)
    assert notifier.status("hello")
    assert abstract_listener.receive() == {"STATUS": "hello"}
    notifier.close()


def test_reloading_carries_monotonic_usec(path_listener: Listener) -> None:
    notifier = Notifier(path_listener.address)
    before = monotonic_usec()
    notifier.reloading()
    message = path_listener.receive()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= monotonic_usec()
    notifier.ready()
    assert path_listener.receive()["READY"] == "1"


def test_a_multiline_status_stays_one_assignment(path_listener: Listener) -> None:
    Notifier(path_listener.address).status("line one\nREADY=1\nline three")
    assert path_listener.receive() == {"STATUS": "line one READY=1 line three"}


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert notifier.watchdog_interval is None


def test_unsupported_and_vanished_sockets_are_harmless(tmp_path: Path) -> None:
    assert socket_address("vsock:2:1234") is None
    assert not Notifier("vsock:2:1234").ready()
    # systemd gone (shutdown): the send fails quietly instead of crashing the daemon.
    assert not Notifier(str(tmp_path / "gone.sock")).ready()


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch, path_listener: Listener) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environment()
    assert notifier.watchdog_interval == 15.0
    # Read once, then unset so no child process inherits them.
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert notifier.watchdog()
    assert path_listener.receive() == {"WATCHDOG": "1"}


def test_watchdog_meant_for_another_pid_is_ignored(monkeypatch: pytest.MonkeyPatch, path_listener: Listener) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier(path_listener.address).watchdog_interval is None
