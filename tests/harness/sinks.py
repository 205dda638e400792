"""Stand-ins for systemd's notify socket and journald's socket: bound datagram sockets that
collect what the daemon sends, and a decoder for journald's native protocol."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from pathlib import Path


def parse_datagram(datagram: bytes) -> dict[str, str]:
    """Decode journald's native protocol, both the KEY=value and the binary length form."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", datagram[nl + 1 : nl + 9])
            fields[line.decode()] = datagram[nl + 9 : nl + 9 + size].decode()
            i = nl + 9 + size + 1
    return fields


class Sink:
    """A bound datagram socket collecting what the daemon sends (notify or journal)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return self.received
            self.received.append(parse_datagram(data))

    def close(self) -> None:
        self.sock.close()


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
