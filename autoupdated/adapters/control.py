"""The daemon's control socket: how `autoupdated trigger` and `autoupdated status` reach it.

A unix stream socket, `/run/autoupdated/control.sock` (`$XDG_RUNTIME_DIR/autoupdated/control.sock`
rootless; `control_socket` in the config overrides), mode 0600, so only the daemon's own user
may use it.  One request per connection, one JSON object per line each way:

    → {"command": "status"}
    ← {"ok": true, "daemon": {...}, "last_run": {...}|null, "next_run": "ISO time"|null, ...}

    → {"command": "trigger", "wait": false}
    ← {"ok": true, "accepted": "started"|"queued", "run": 7}

    → {"command": "trigger", "wait": true}
    ← {"ok": true, "accepted": ..., "run": 7, "result": {...the finished run's record...}}

A trigger while a run is in progress is queued: every trigger that arrives during that run is
merged into one more run right after it.  Errors are `{"ok": false, "error": "..."}`.  A unix
socket (rather than a signal and a pid file) lets the client get an answer, and the file mode is
the access control.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MAX_REQUEST = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(Exception):
    """The daemon could not be asked (not running, no permission, bad answer)."""


class ControlServer:
    """Serves the control socket on the daemon's event loop; idle, it costs nothing."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        _remove_stale(self.path)
        old_umask = os.umask(0o177)  # the socket is created 0600, no window where others may connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), 10)
                if len(line) > MAX_REQUEST:
                    raise ValueError("request too large")
                request = json.loads(line or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
            except (ValueError, TimeoutError, asyncio.LimitOverrunError) as err:
                reply: dict[str, Any] = {"ok": False, "error": f"bad request: {err}"}
            else:
                try:
                    reply = await self.handler(request)
                except Exception as err:  # a bug in a handler must not take the daemon down
                    reply = {"ok": False, "error": f"internal error: {err}"}
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)


def _remove_stale(path: Path) -> None:
    """A socket file left by a killed daemon would make bind() fail; one that answers is in use."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
    else:
        raise ControlError(f"{path}: another autoupdated daemon is already listening there")
    finally:
        probe.close()


def request(path: Path, message: dict[str, Any], *, timeout: float | None = 10.0) -> dict[str, Any]:
    """Send one request to the daemon and return its answer (blocking; for the CLI)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"the daemon is not running (nothing listens on {path}); start it with `systemctl start autoupdated`"
            ) from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied; run this as the daemon's user (root)") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        raise ControlError(f"the daemon did not answer on {path} in time") from None
    except OSError as err:
        raise ControlError(f"{path}: {err.strerror or err}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"{path}: the daemon's answer was not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: unexpected answer from the daemon")
    return reply
