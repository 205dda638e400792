"""What the daemon remembers across restarts and reboots, in its state directory.

- `timer.stamp`: its mtime is when the last scheduled run was triggered, exactly like the stamp
  files systemd keeps for `Persistent=true` timers.  At start-up a scheduled time that fell
  between the stamp and now was missed (machine off, daemon stopped) and is caught up once.
- `last-run.json`: the last run's outcome, so `autoupdated status` can answer even when the
  daemon is not running.

Both are written atomically (temp file + rename) so a crash or power cut never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAMP_NAME = "timer.stamp"
LAST_RUN_NAME = "last-run.json"


class StateDir:
    """The daemon's state directory (StateDirectory=autoupdated → /var/lib/autoupdated)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def stamp_path(self) -> Path:
        return self.path / STAMP_NAME

    @property
    def last_run_path(self) -> Path:
        return self.path / LAST_RUN_NAME

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def read_stamp(self) -> datetime | None:
        """When the last scheduled run was triggered, or None when there never was one."""
        try:
            mtime = self.stamp_path.stat().st_mtime
        except OSError:
            return None
        return datetime.fromtimestamp(mtime, UTC)

    def touch_stamp(self, when: datetime | None = None) -> None:
        """Record a trigger time (now by default), as systemd does when a persistent timer elapses."""
        self.ensure()
        self.stamp_path.touch(exist_ok=True)
        if when is not None:
            stamp = when.timestamp()
            os.utime(self.stamp_path, (stamp, stamp))
        else:
            os.utime(self.stamp_path, None)

    def read_last_run(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.last_run_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_last_run(self, record: dict[str, Any]) -> None:
        self.ensure()
        write_atomic(self.last_run_path, json.dumps(record, indent=2, default=str) + "\n")


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
