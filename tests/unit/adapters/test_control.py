"""The control socket on real unix sockets: hostile requests get a reply, and start-up deletes
only a dead socket, never somebody's file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoupdated.adapters import control
from autoupdated.adapters.control import ControlError, ControlServer, parse_request


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: sun_path holds 107 bytes, pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ctl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "echo": request}


def raw_exchange(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks))
    assert isinstance(reply, dict)
    return reply


# -- requests ---------------------------------------------------------------------------------


def test_parse_request_takes_a_flat_object() -> None:
    assert parse_request(b'{"command": "trigger", "wait": true}\n') == {"command": "trigger", "wait": True}
    assert parse_request(b"") == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[" * 30000 + b"\n", "nested more than 8 deep"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested more than 8 deep"),
        (b"[1, 2]\n", "request must be a JSON object"),
        (b"{nope\n", "Expecting property name"),
        (b" " * (control.MAX_REQUEST + 1), "request too large"),
    ],
)
def test_parse_request_refuses_with_a_reason(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_request(line)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert parse_request(b'{"command": "[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{{"}') == {
        "command": '[[[[[[[[[[[[[[[["{{{{{{{{{{{{'
    }


async def test_a_request_nested_30000_deep_gets_a_bad_request_reply(short_dir: Path) -> None:
    path = short_dir / "c.sock"
    server = ControlServer(path, echo)
    await server.start()
    try:
        reply = await asyncio.to_thread(raw_exchange, path, b"[" * 30000 + b"\n")
        assert reply == {"ok": False, "error": "bad request: nested more than 8 deep"}
        # and the server is still there for the next client
        assert await asyncio.to_thread(control.request, path, {"command": "status"}) == {
            "ok": True,
            "echo": {"command": "status"},
        }
    finally:
        await server.close()
    assert not path.exists()


# -- start-up: what may be removed at the socket's path ---------------------------------------


async def test_a_regular_file_at_the_path_is_left_alone_and_start_refuses(short_dir: Path) -> None:
    path = short_dir / "c.sock"
    path.write_text("precious\n")
    with pytest.raises(ControlError) as info:
        await ControlServer(path, echo).start()
    message = str(info.value)
    assert message.startswith(f"{path}: exists and is not a socket (a regular file); autoupdated will not delete it")
    assert "control_socket" in message
    assert path.read_text() == "precious\n"


async def test_a_directory_or_symlink_at_the_path_is_left_alone(short_dir: Path) -> None:
    directory = short_dir / "d.sock"
    directory.mkdir()
    with pytest.raises(ControlError, match="is not a socket \\(a directory\\)"):
        await ControlServer(directory, echo).start()
    assert directory.is_dir()
    target = short_dir / "target"
    target.write_text("x")
    link = short_dir / "l.sock"
    link.symlink_to(target)
    with pytest.raises(ControlError, match="is not a socket \\(a symbolic link\\)"):
        await ControlServer(link, echo).start()
    assert link.is_symlink() and target.read_text() == "x"


async def test_a_dead_socket_left_by_a_killed_daemon_is_replaced(short_dir: Path) -> None:
    path = short_dir / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: connect() is refused, as after a SIGKILL
    dead.close()
    server = ControlServer(path, echo)
    await server.start()
    try:
        reply = await asyncio.to_thread(control.request, path, {"command": "status"})
        assert reply["ok"] is True
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        await server.close()


async def test_a_socket_somebody_answers_on_is_not_taken_over(short_dir: Path) -> None:
    path = short_dir / "c.sock"
    first = ControlServer(path, echo)
    await first.start()
    try:
        with pytest.raises(ControlError, match="another autoupdated daemon is already listening there"):
            await ControlServer(path, echo).start()
        assert (await asyncio.to_thread(control.request, path, {}))["ok"] is True
    finally:
        await first.close()


def test_the_client_names_the_socket_when_nobody_listens(short_dir: Path) -> None:
    with pytest.raises(ControlError, match=r"the daemon is not running \(nothing listens on .*c\.sock\)"):
        control.request(short_dir / "c.sock", {"command": "status"})
