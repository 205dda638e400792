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
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from autoupdated.config import json_depth

MAX_REQUEST = 64 * 1024
MAX_DEPTH = 8  # a request is a flat object; deeper nesting is refused before json.loads recurses
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
                request = parse_request(line)
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


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line as a dict; ValueError (worded for the reply) for anything else."""
    if len(line) > MAX_REQUEST:
        raise ValueError("request too large")
    if json_depth(line.decode("utf-8", "replace")) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} deep")
    try:
        request = json.loads(line or b"{}")
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(request, dict):
        raise ValueError("request must be a JSON object")
    return request


def _remove_stale(path: Path) -> None:
    """A socket file left by a killed daemon would make bind() fail, so it goes; anything else
    at the path (a socket that answers, a regular file, a directory, a symlink) is not ours to
    delete."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise ControlError(f"{path}: cannot inspect it: {err.strerror or err}; check control_socket") from None
    if not stat.S_ISSOCK(mode):
        raise ControlError(
            f"{path}: exists and is not a socket ({_kind(mode)}); autoupdated will not delete it: "
            "move it away, or set control_socket in the configuration to another path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
    except ConnectionRefusedError:  # nobody listens: left behind by a daemon that was killed
        path.unlink(missing_ok=True)
    except OSError as err:
        raise ControlError(
            f"{path}: a socket that cannot be probed ({err.strerror or err}); "
            "if no daemon uses it, remove it, or set control_socket to another path"
        ) from None
    else:
        raise ControlError(
            f"{path}: another autoupdated daemon is already listening there; stop it "
            "(`systemctl stop autoupdated`) or set control_socket to another path"
        )
    finally:
        probe.close()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a socket"


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
