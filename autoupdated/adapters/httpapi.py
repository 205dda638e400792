"""A small read-only HTTP/1.1 server on the daemon's asyncio loop: /metrics and /api/v1/*.

GET and HEAD only, one request per connection, the request line and headers bounded in size
and time; anything else is 404 or 405.  Nothing it serves changes anything: there is no route
that triggers, approves or rolls back (that is the control socket's, which is root's only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

MAX_HEAD = 8192  # request line and headers
HEAD_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes


Handler = Callable[[Mapping[str, str]], Awaitable[Reply]]


class HttpError(Exception):
    """The listener could not be opened; the text names the address and the cause."""


class HttpServer:
    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self.routes = dict(routes)
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, *, host: str = "", port: int = 0, path: str = "") -> None:
        try:
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                self._server = await asyncio.start_unix_server(self._serve, path=path, limit=MAX_HEAD)
                os.chmod(path, 0o660)
                self.address = f"unix:{path}"
            else:
                self._server = await asyncio.start_server(
                    self._serve, host=host, port=port, limit=MAX_HEAD, reuse_address=True
                )
                bound = self._server.sockets[0].getsockname()
                self.address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        except OSError as err:
            where = path or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            raise HttpError(f"cannot listen on {where}: {err.strerror or err}") from None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.LimitOverrunError, ValueError):
                await self._write(writer, Reply(431, "text/plain", b"request head too large\n"), head=False)
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            reply, is_head = await self._answer(head)
            await self._write(writer, reply, head=is_head)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[Reply, bool]:
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return Reply(400, "text/plain", b"bad request\n"), False
        parts = urlsplit(target)
        handler = self.routes.get(parts.path)
        if handler is None:
            return Reply(404, "text/plain", b"not found; try /metrics, /api/v1/status, /api/v1/history\n"), False
        if method not in ("GET", "HEAD"):
            return Reply(405, "text/plain", b"read-only: GET or HEAD\n"), False
        try:
            reply = await handler(dict(parse_qsl(parts.query)))
        except Exception as err:  # a bug in a handler must not take the listener down
            reply = Reply(500, "text/plain", f"internal error: {type(err).__name__}\n".encode())
        return reply, method == "HEAD"

    async def _write(self, writer: asyncio.StreamWriter, reply: Reply, *, head: bool) -> None:
        phrase = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else ""
        lines = [
            f"HTTP/1.1 {reply.status} {phrase}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            "Connection: close",
            "Cache-Control: no-store",
        ]
        if reply.status == 405:
            lines.append("Allow: GET, HEAD")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else reply.body)
        with contextlib.suppress(ConnectionError, TimeoutError):
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
