"""The sd_notify protocol, spoken directly (no libsystemd binding to install or load).

systemd hands a `Type=notify` service the address of a datagram socket in `$NOTIFY_SOCKET`:
a filesystem path, or `@name` for a socket in the abstract namespace.  Each datagram is a set
of newline-separated `KEY=value` assignments (`READY=1`, `STATUS=...`, `WATCHDOG=1`, ...).
Without `$NOTIFY_SOCKET` (a terminal, a container) every call is a cheap no-op, so the daemon
never has to ask whether it runs under systemd.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def socket_address(value: str) -> str | bytes | None:
    """The `sendto` address for a `$NOTIFY_SOCKET` value; None for kinds we do not speak.

    `@name` means the abstract namespace (a leading NUL byte on the wire).  `vsock:` addresses
    (systemd >= 254, for VMs) are not used for services on the host, so they are ignored.
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, what systemd >= 253 wants next to RELOADING=1."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _one_line(value: object) -> str:
    # A newline would end the assignment and start a bogus one: STATUS must stay one line.
    return " ".join(str(value).splitlines())


class Notifier:
    """Sends sd_notify datagrams to the service manager, if there is one."""

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        self.raw_address = address if address is not None else os.environ.get(NOTIFY_SOCKET_ENV, "")
        self.address = socket_address(self.raw_address)
        self.watchdog_usec = watchdog_usec if watchdog_usec is not None else _watchdog_from_env()
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, *, unset: bool = True) -> Notifier:
        """Read $NOTIFY_SOCKET/$WATCHDOG_USEC once, then drop them so no child process inherits them."""
        notifier = cls()
        if unset:
            for name in (NOTIFY_SOCKET_ENV, "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of WatchdogSec, as sd_watchdog_enabled(3) advises."""
        if not self.watchdog_usec or not self.enabled:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, fields: Mapping[str, object]) -> bool:
        """Send one datagram of assignments; True when it was sent."""
        if self.address is None or not fields:
            return False
        payload = "".join(f"{key}={_one_line(value)}\n" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
        except OSError:
            # The manager went away (shutdown) or the socket is full: never let this stop the daemon.
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields: dict[str, object] = {"READY": 1, "MAINPID": os.getpid()}
        if status is not None:
            fields["STATUS"] = status
        return self.send(fields)

    def reloading(self) -> bool:
        # MONOTONIC_USEC is required by Type=notify-reload (systemd >= 253); older managers ignore it.
        return self.send({"RELOADING": 1, "MONOTONIC_USEC": monotonic_usec()})

    def stopping(self, status: str | None = None) -> bool:
        fields: dict[str, object] = {"STOPPING": 1}
        if status is not None:
            fields["STATUS"] = status
        return self.send(fields)

    def status(self, text: str) -> bool:
        return self.send({"STATUS": text})

    def watchdog(self) -> bool:
        return self.send({"WATCHDOG": 1})

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _watchdog_from_env() -> int | None:
    """$WATCHDOG_USEC, honoured only when $WATCHDOG_PID (if set) is this process, like sd_watchdog_enabled."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value if value > 0 else None
