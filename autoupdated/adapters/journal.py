"""Structured logging to journald over its native protocol.

The native protocol (a datagram of `KEY=value` lines, or `KEY\\n<le64 length><value>\\n`
for values with newlines) carries our fields (CONTAINER_NAME, UNIT, RESULT, ...)
so `journalctl -u autoupdated CONTAINER_NAME=web` finds them.  When there is no
journal socket (a terminal, a container without it), nothing is sent and the
caller's stderr output is all there is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from autoupdated.model import Entry, Status

JOURNAL_SOCKET = "/run/systemd/journal/socket"

# Fixed MESSAGE_IDs (128-bit, as `journalctl --new-id128` makes them), one per kind of entry,
# so `journalctl MESSAGE_ID=...` selects them.
MESSAGE_ID_OUTCOME = "3f1c8a52b2a44c5e9e0d7b6a41f07c11"
MESSAGE_ID_RUN = "8d2e7f0a9b3c4d1e86f5a7b2c9d0e312"
MESSAGE_ID_RUN_FAILED = "b7a1d3e5f9c24b6e8a0c2e4f6a8b0d13"
MESSAGE_ID_CONFIG = "c4e6a8b0d2f44e1a9c3e5a7b9d1f3a14"
MESSAGE_ID_DAEMON = "e2b4d6f8a0c24e6a8c0e2a4c6e8a0c15"

# syslog priorities, and the names `log_level` gives them (one map, for the daemon and its logging)
ERR = 3
WARNING = 4
NOTICE = 5
INFO = 6
DEBUG = 7
LEVELS = {"debug": DEBUG, "info": INFO, "notice": NOTICE, "warning": WARNING, "error": ERR}
LEVEL_NAMES = {priority: name for name, priority in LEVELS.items()}


def priority_of(python_level: int) -> int:
    """The syslog priority of a Python logging level (NOTICE lies between INFO and WARNING)."""
    if python_level >= logging.ERROR:
        return ERR
    if python_level >= logging.WARNING:
        return WARNING
    if python_level > logging.INFO:
        return NOTICE
    if python_level >= logging.INFO:
        return INFO
    return DEBUG


def python_level(name: str) -> int:
    """The Python logging level for a `log_level` name."""
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO + 5}
    return levels.get(name, logging.WARNING if name == "warning" else logging.ERROR)


_OUTCOME_PRIORITY = {Status.UPDATED: NOTICE, Status.FAILED: ERR, Status.ROLLED_BACK: WARNING}
_OUTCOME_VERB = {
    Status.UPDATED: "updated to",
    Status.NOT_UPDATED: "is up to date with",
    Status.PENDING: "has an update pending for",
    Status.FAILED: "failed to update to",
    Status.ROLLED_BACK: "was rolled back from",
}


def outcome_entry(entry: Entry) -> tuple[str, int, dict[str, object]]:
    """One container's outcome as a journal entry: message, priority, structured fields."""
    message = (
        f"container {entry.container_name} ({entry.container_id[:12]}) in {entry.unit} "
        f"{_OUTCOME_VERB[entry.updated]} {entry.image}"
    )
    if entry.error:
        message += f": {entry.error}"
    fields: dict[str, object] = {
        "MESSAGE_ID": MESSAGE_ID_OUTCOME,
        "CONTAINER_ID": entry.container_id,
        "CONTAINER_NAME": entry.container_name,
        "IMAGE": entry.image,
        "UNIT": entry.unit,
        "POLICY": entry.policy,
        "RESULT": str(entry.updated),
        "OLD_DIGEST": entry.old_digest,
        "NEW_DIGEST": entry.new_digest,
        "OLD_IMAGE_ID": entry.old_image_id,
        "NEW_IMAGE_ID": entry.new_image_id,
        "ERROR": entry.error or "",
    }
    return message, _OUTCOME_PRIORITY.get(entry.updated, INFO), fields


def podman_system_event(status: str, now: datetime) -> tuple[str, int, dict[str, object]]:
    """A `system` event as podman's journald event writer records it (libpod/events/
    journal_linux.go), so `podman events --filter type=system` lists it; send it with
    SYSLOG_IDENTIFIER=podman, which is what podman's reader matches."""
    go_time = now.strftime("%Y-%m-%d %H:%M:%S.%f %z %Z")
    fields: dict[str, object] = {
        "PODMAN_EVENT": status,
        "PODMAN_TYPE": "system",
        "PODMAN_TIME": now.isoformat(timespec="microseconds"),   # RFC 3339 with a UTC offset
    }
    return f"{go_time} system {status}", INFO, fields


class PodmanEvents:
    """The engine's EventsPort: podman's journald event log (nothing when journald is absent)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.journal = Journal(path, identifier="podman")

    def system_event(self, status: str) -> None:
        message, priority, fields = podman_system_event(status, datetime.now().astimezone())
        self.journal.send(message, priority=priority, fields=fields)
        self.journal.close()


def _encode(key: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


def _field_name(key: str) -> str:
    """Journal field names: upper case letters, digits, underscores, not starting with '_'."""
    name = "".join(ch if ch.isalnum() else "_" for ch in key.upper()).lstrip("_")
    return name or "FIELD"


class Journal:
    """Sends entries to journald; silently does nothing when journald is not there."""

    def __init__(self, path: str | os.PathLike[str] | None = None, identifier: str = "autoupdated") -> None:
        self.path = str(path or os.environ.get("AUTOUPDATED_JOURNAL_SOCKET", JOURNAL_SOCKET))
        self.identifier = identifier
        self._sock: socket.socket | None = None

    @property
    def available(self) -> bool:
        return Path(self.path).exists()

    def send(self, message: str, *, priority: int = INFO, fields: Mapping[str, object] | None = None) -> bool:
        """Send one entry; True when journald accepted the datagram."""
        if not self.available:
            return False
        parts = [
            _encode("MESSAGE", message),
            _encode("PRIORITY", str(priority)),
            _encode("SYSLOG_IDENTIFIER", self.identifier),
        ]
        for key, value in (fields or {}).items():
            if value is None or value == "":
                continue
            parts.append(_encode(_field_name(key), str(value)))
        payload = b"".join(parts)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(payload, self.path)
        except OSError as err:
            # Too large for a datagram, socket gone, buffer full: never let logging break a run.
            print(f"autoupdated: could not write to the journal at {self.path}: {err}", file=sys.stderr)
            return False
        return True

    def outcome(self, entry: Entry) -> None:
        """The engine's OutcomeSink: one entry per container and run."""
        message, priority, fields = outcome_entry(entry)
        self.send(message, priority=priority, fields=fields)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
