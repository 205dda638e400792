"""The podman adapter when the service goes away under it: a fake service on a Unix socket that
resets connections on cue (a killed `podman system service` does that to the request in flight)."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoupdated.adapters import podman as podman_adapter
from autoupdated.adapters.podman import Podman
from autoupdated.errors import PodmanUnavailable


class _Service(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, resets: int) -> None:
        super().__init__(path, _Handler)
        self.resets = resets  # how many requests to answer with a reset, from the first on
        self.requests: list[str] = []
        self.lock = threading.Lock()


class _Handler(socketserver.StreamRequestHandler):
    server: _Service

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            request = line.decode().strip()
            length = 0
            while (header := self.rfile.readline().strip()) != b"":
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.rfile.read(length)
            with self.server.lock:
                self.server.requests.append(request)
                reset = self.server.resets > 0
                self.server.resets -= 1
            if reset:
                # SO_LINGER 0: close() sends a reset, as the kernel does for a killed process.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            body = b'[{"Id": "sha256:d", "Size": 3}]' if "/images/prune" in request else b"OK"
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[_Service]:
    server = _Service(str(tmp_path / "podman.sock"), resets=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podman_adapter, "RETRY_DELAYS", (0.01, 0.02))


def _url(server: _Service) -> str:
    return f"unix://{server.server_address}"


def test_a_read_whose_connection_is_reset_is_asked_again_on_a_new_one(service: _Service) -> None:
    service.resets = 2
    asyncio.run(Podman(_url(service)).ping())
    assert [r.split()[0] for r in service.requests] == ["GET"] * 3
    assert all(r.endswith("/_ping HTTP/1.1") for r in service.requests)


def test_repeatable_writes_are_asked_again_too(service: _Service) -> None:
    api = Podman(_url(service))
    service.resets = 1
    asyncio.run(api.tag("sha256:abc", "example.test/app:latest"))
    service.resets = 1
    report = asyncio.run(api.prune_images())
    assert report.deleted == ("sha256:d",) and report.reclaimed == 3
    tags = [r for r in service.requests if "/tag?" in r]
    prunes = [r for r in service.requests if "/images/prune" in r]
    assert len(tags) == 2 and len(prunes) == 2
    assert "repo=example.test%2Fapp" in tags[0] and "tag=latest" in tags[0]


def test_a_pull_is_not_repeated_and_the_error_says_the_connection_was_lost(service: _Service) -> None:
    service.resets = 1
    with pytest.raises(PodmanUnavailable) as caught:
        asyncio.run(Podman(_url(service)).pull("example.test/app:latest", credentials=None, tls_verify=None))
    assert len(service.requests) == 1 and service.requests[0].startswith("POST ")
    text = str(caught.value)
    assert f"cannot reach the podman service at {_url(service)}" in text
    assert "reset by peer" in text or "closed the connection" in text, text
    assert "no service is listening" not in text


def test_a_service_that_keeps_failing_is_given_up_on_after_the_last_delay(service: _Service) -> None:
    service.resets = 10
    with pytest.raises(PodmanUnavailable, match="cannot reach the podman service"):
        asyncio.run(Podman(_url(service)).ping())
    assert len(service.requests) == 1 + len(podman_adapter.RETRY_DELAYS)


def test_a_missing_socket_says_so_after_the_same_bounded_tries(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/absent.sock"
    with pytest.raises(PodmanUnavailable) as caught:
        asyncio.run(Podman(url).ping())
    assert "No such file or directory" in str(caught.value)
    assert "systemctl enable --now podman.socket" in str(caught.value)
