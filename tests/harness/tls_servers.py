"""Small HTTPS servers on 127.0.0.1 (certificates from a trustme CA) that record every request.

    ca = trustme.CA()
    server = TLSServer(ca, lambda seen: (200, {"Content-Type": "text/plain"}, b"hi")).start()
    server.url                 # "https://127.0.0.1:41234"
    server.seen                # [Seen(method="GET", path="/", headers={...}, body=b"")]
    server.stop()

Used where a test needs real hosts that differ by origin (a registry redirecting to storage
elsewhere) and must prove what reached each of them.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme

__all__ = ["Answer", "Seen", "TLSServer", "write_certs_d"]

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def raw(self) -> str:
        """Everything the client sent, as text: to search for a secret in any encoding."""
        lines = [f"{self.method} {self.path}", *(f"{k}: {v}" for k, v in self.headers.items())]
        return "\n".join(lines) + "\n" + self.body.decode("latin-1")


class TLSServer:
    """A threaded HTTPS server answering `handler(seen)`; `seen` lists every request."""

    def __init__(self, ca: trustme.CA, handler: Callable[[Seen], Answer]) -> None:
        self.ca = ca
        self.handler = handler
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host_port}"

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def start(self) -> TLSServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._lock:
                    owner.seen.append(seen)
                status, headers, content = owner.handler(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_HEAD = do_POST = _handle

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def write_certs_d(ca: trustme.CA, base: Path, *servers: TLSServer) -> Path:
    """A certs.d tree trusting `ca` for each server's host:port; returns `base`."""
    for server in servers:
        directory = base / server.host_port
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.crt").write_bytes(ca.cert_pem.bytes())
    return base
