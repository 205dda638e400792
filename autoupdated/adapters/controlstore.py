"""What the operator controls remember between runs, in the history database's file (its own
tables, next to adapters/history.py's):

    first_seen  (reference, digest) -> when a run first saw that remote digest (min_image_age)
    approvals   container -> the digest `autoupdated approve` allowed (mode approve)
    waiting     container -> the update a control holds, why, and when it may go on by itself
                (status, `autoupdated approve`, the daemon's wake-up at a window's start)

Every sqlite3 error becomes one HistoryError naming the file, the step and a fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from autoupdated.adapters.history import BUSY_TIMEOUT_MS, _hint
from autoupdated.controls.model import HookRun, Waiting
from autoupdated.errors import HistoryError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS first_seen (
    reference TEXT NOT NULL,
    digest    TEXT NOT NULL,
    seen      REAL NOT NULL,
    PRIMARY KEY (reference, digest)
);
CREATE TABLE IF NOT EXISTS approvals (
    container TEXT PRIMARY KEY,
    digest    TEXT NOT NULL,
    approved  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waiting (
    container   TEXT PRIMARY KEY,
    unit        TEXT NOT NULL,
    image       TEXT NOT NULL,
    digest      TEXT NOT NULL,
    waits_for   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    eligible_at TEXT,
    since       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tag_lists (
    repository TEXT PRIMARY KEY,
    listed     REAL NOT NULL,
    tags       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hook_runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       TEXT NOT NULL,
    phase      TEXT NOT NULL,
    hook       TEXT NOT NULL,
    container  TEXT NOT NULL,
    unit       TEXT NOT NULL,
    image      TEXT NOT NULL,
    new_digest TEXT NOT NULL,
    exit_code  INTEGER,
    error      TEXT NOT NULL,
    seconds    REAL NOT NULL,
    output     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS new_tags (
    container TEXT PRIMARY KEY,
    image     TEXT NOT NULL,
    newer     TEXT NOT NULL,
    seen      TEXT NOT NULL
);
"""

HOOK_OUTPUT = 64 * 1024  # characters of a hook's output kept in the history


class ControlStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self._step("opening"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _step(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as err:
            raise HistoryError(f"{what} in the history database {self.path} failed: {err}; {_hint(err)}") from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    async def aclose(self) -> None:
        self.close()

    # -- cooldown ----------------------------------------------------------------------------

    def first_seen(self, reference: str, digest: str, now: float) -> float:
        with self._step("recording when a digest was first seen"):
            self._db.execute(
                "INSERT OR IGNORE INTO first_seen (reference, digest, seen) VALUES (?, ?, ?)", (reference, digest, now)
            )
            row = self._db.execute(
                "SELECT seen FROM first_seen WHERE reference = ? AND digest = ?", (reference, digest)
            ).fetchone()
        return float(row[0])

    # -- approval ----------------------------------------------------------------------------

    def approved(self, container: str) -> str | None:
        with self._step("reading approvals"):
            row = self._db.execute("SELECT digest FROM approvals WHERE container = ?", (container,)).fetchone()
        return str(row[0]) if row else None

    def approve(self, container: str, digest: str) -> None:
        with self._step("recording an approval"):
            self._db.execute(
                "INSERT OR REPLACE INTO approvals (container, digest, approved) VALUES (?, ?, ?)",
                (container, digest, datetime.now(UTC).isoformat(timespec="seconds")),
            )

    # -- what waits --------------------------------------------------------------------------

    def waiting(self, entry: Waiting) -> None:
        with self._step("recording a held update"):
            self._db.execute(
                "INSERT OR REPLACE INTO waiting VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.container, entry.unit, entry.image, entry.digest, entry.waits_for, entry.reason,
                 entry.eligible_at, entry.since),
            )  # fmt: skip

    def done(self, container: str) -> None:
        """The container's update went through (or was rolled back): nothing waits, the approval is used."""
        with self._step("clearing a held update"):
            self._db.execute("DELETE FROM waiting WHERE container = ?", (container,))
            self._db.execute("DELETE FROM approvals WHERE container = ?", (container,))

    def held(self) -> list[Waiting]:
        with self._step("reading held updates"):
            rows = self._db.execute(
                "SELECT container, unit, image, digest, waits_for, reason, eligible_at, since FROM waiting "
                "ORDER BY container"
            ).fetchall()
        return [Waiting(*row) for row in rows]

    # -- new tags ----------------------------------------------------------------------------

    def tags_listed(self, repository: str) -> tuple[float, list[str]] | None:
        with self._step("reading a tag list"):
            row = self._db.execute("SELECT listed, tags FROM tag_lists WHERE repository = ?", (repository,)).fetchone()
        if row is None:
            return None
        try:
            tags = json.loads(row[1])
        except ValueError:
            return None
        return float(row[0]), [str(tag) for tag in tags]

    def remember_tags(self, repository: str, tags: list[str], now: float) -> None:
        with self._step("recording a tag list"):
            self._db.execute(
                "INSERT OR REPLACE INTO tag_lists (repository, listed, tags) VALUES (?, ?, ?)",
                (repository, now, json.dumps(tags)),
            )

    def new_tags(self, container: str, image: str, newer: list[str]) -> None:
        with self._step("recording new tags"):
            if not newer:
                self._db.execute("DELETE FROM new_tags WHERE container = ?", (container,))
                return
            self._db.execute(
                "INSERT OR REPLACE INTO new_tags VALUES (?, ?, ?, ?)",
                (container, image, json.dumps(newer), datetime.now(UTC).isoformat(timespec="seconds")),
            )

    # -- hooks ---------------------------------------------------------------------------------

    def hook_ran(self, run: HookRun) -> None:
        """Every hook run, with its exit code and the last HOOK_OUTPUT characters it printed."""
        with self._step("recording a hook run"):
            self._db.execute(
                "INSERT INTO hook_runs (time, phase, hook, container, unit, image, new_digest, exit_code, error, "
                "seconds, output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    run.phase,
                    run.hook,
                    run.container,
                    run.unit,
                    run.image,
                    run.new_digest,
                    run.exit_code,
                    run.error,
                    round(run.seconds, 3),
                    run.output[-HOOK_OUTPUT:],
                ),
            )

    def hook_runs(self, container: str | None = None) -> list[HookRun]:
        """The recorded hook runs, oldest first (of one container when given)."""
        sql = "SELECT phase, hook, container, unit, image, new_digest, exit_code, output, error, seconds FROM hook_runs"
        params: tuple[str, ...] = ()
        if container:
            sql, params = sql + " WHERE container = ?", (container,)
        with self._step("reading hook runs"):
            rows = self._db.execute(sql + " ORDER BY id", params).fetchall()
        return [HookRun(*row) for row in rows]

    def newer_tags(self) -> list[dict[str, object]]:
        with self._step("reading new tags"):
            rows = self._db.execute("SELECT container, image, newer, seen FROM new_tags ORDER BY container").fetchall()
        return [{"container": c, "image": i, "newer": json.loads(n), "seen": s} for c, i, n, s in rows]

    def forget(self, container: str) -> None:
        """The container no longer waits (a run found it up to date)."""
        with self._step("clearing a held update"):
            self._db.execute("DELETE FROM waiting WHERE container = ?", (container,))
