"""Durable update history: one SQLite database in the state directory.

Every unit restart the engine makes is written down *before* anything changes and finished
*after*, one transaction per step, so a crash at any point leaves a record of what was under
way (autoupdated/recovery.py finishes it on the next start):

    intent   before the pulls: the unit, each container, its reference, old digest/image ID,
             result 'in progress'                                  (engine: record_intents)
    step     after the pulls, before the restart: the new image IDs  (engine: _update_unit)
    outcome  after the restart and the health gate: true / failed / rolled back, and the error

Tables:
    intents  one row per unit restart (update, manual rollback or recovery): run id, action,
             unit, start and finish time, state 'in progress' or 'done'
    updates  one row per container of that restart: what `autoupdated history` shows
    units    every unit the engine saw running a labelled container, with the container's
             name, reference, policy and auth file: how a unit whose container is gone (failed
             `--new` units) is found again (update_failed_units)
    notified what each notification target was last told per container (its event and digest),
             so a state is announced once, also across restarts (autoupdated/events.py); the
             target is a hash of its URLs, never a URL

The database is in WAL mode with synchronous=FULL: a committed step survives a power cut, and
`autoupdated history` can read while the daemon writes.  Nothing secret is ever stored (no
credentials, only the auth file's path).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoupdated.errors import HistoryError
from autoupdated.model import (
    AUTHFILE_LABEL,
    AUTOUPDATE_LABEL,
    ContainerInfo,
    Entry,
    Intent,
    IntentRecord,
    KnownUnit,
    Row,
)

DB_NAME = "history.db"
SCHEMA_VERSION = 1
IN_PROGRESS = "in progress"
DONE = "done"
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    action    TEXT NOT NULL,
    unit      TEXT NOT NULL,
    started   TEXT NOT NULL,
    finished  TEXT,
    state     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS intents_state ON intents(state);
CREATE TABLE IF NOT EXISTS updates (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    intent         INTEGER NOT NULL REFERENCES intents(id),
    container_id   TEXT NOT NULL,
    container_name TEXT NOT NULL,
    reference      TEXT NOT NULL,
    policy         TEXT NOT NULL,
    old_digest     TEXT NOT NULL,
    new_digest     TEXT NOT NULL,
    old_image_id   TEXT NOT NULL,
    new_image_id   TEXT NOT NULL,
    result         TEXT NOT NULL,
    error          TEXT
);
CREATE INDEX IF NOT EXISTS updates_intent ON updates(intent);
CREATE INDEX IF NOT EXISTS updates_container ON updates(container_name);
CREATE TABLE IF NOT EXISTS units (
    unit           TEXT NOT NULL,
    container_name TEXT NOT NULL,
    container_id   TEXT NOT NULL,
    reference      TEXT NOT NULL,
    policy         TEXT NOT NULL,
    authfile       TEXT,
    image_id       TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    PRIMARY KEY (unit, container_name)
);
CREATE TABLE IF NOT EXISTS notified (
    target  TEXT NOT NULL,
    key     TEXT NOT NULL,
    state   TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (target, key)
);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _hint(err: BaseException) -> str:
    text = str(err)
    if "disk is full" in text or "No space" in text:
        return "the file system is full: free some space"
    if "readonly" in text or "read-only" in text:
        return "the file is read-only: check its permissions and the file system"
    if "not a database" in text or "malformed" in text:
        return "the file is damaged: move it away (a new one is created) and keep it for inspection"
    if "locked" in text:
        return "another process holds it locked: try again"
    return "check the file and its directory"


class History:
    """The history database at `path`; one per run (its run ID) or per CLI command."""

    def __init__(
        self, path: str | os.PathLike[str], *, run_id: str | None = None, action: str = "update", readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id or new_run_id()
        self.action = action
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None
        self._open()

    # -- connection ------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            if self.readonly:
                if not self.path.exists():
                    raise HistoryError(f"history database {self.path} does not exist (no update recorded yet)")
                db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                with contextlib.suppress(OSError):
                    os.chmod(self.path, 0o600)
        except (sqlite3.Error, OSError) as err:
            raise HistoryError(f"cannot open the history database {self.path}: {err}; {_hint(err)}") from None
        db.row_factory = sqlite3.Row
        self._db = db
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self.readonly:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
                db.execute("PRAGMA synchronous = FULL")
                db.execute("PRAGMA foreign_keys = ON")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise HistoryError(
                        f"history database {self.path} was written by a newer autoupdated (schema {version}, "
                        f"this one knows {SCHEMA_VERSION}); upgrade autoupdated"
                    )
                with self._transaction() as cur:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            cur.execute(statement)
                    cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except HistoryError:
            self.close()
            raise
        except sqlite3.Error as err:
            self.close()
            raise HistoryError(f"cannot use the history database {self.path}: {err}; {_hint(err)}") from None

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise HistoryError(f"history database {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One step: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
            raise

    def _write(self, what: str) -> contextlib.AbstractContextManager[sqlite3.Cursor]:
        return _Guarded(self, what)

    # -- the engine's HistoryPort -----------------------------------------------------------

    def intent(self, unit: str, entries: list[Entry]) -> IntentRecord:
        """Before anything changes for `unit`: one 'in progress' row per container."""
        with self._write(f"recording the update of unit {unit}") as cur:
            cur.execute(
                "INSERT INTO intents (run_id, action, unit, started, state) VALUES (?, ?, ?, ?, ?)",
                (self.run_id, self.action, unit, now(), IN_PROGRESS),
            )
            intent = int(cur.lastrowid or 0)
            rows = []
            for entry in entries:
                cur.execute(
                    "INSERT INTO updates (intent, container_id, container_name, reference, policy, old_digest, "
                    "new_digest, old_image_id, new_image_id, result, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        intent,
                        entry.container_id,
                        entry.container_name,
                        entry.image,
                        entry.policy,
                        entry.old_digest,
                        entry.new_digest,
                        entry.old_image_id,
                        entry.new_image_id,
                        IN_PROGRESS,
                        None,
                    ),
                )
                rows.append(int(cur.lastrowid or 0))
        return IntentRecord(intent, unit, tuple(rows))

    def step(self, record: IntentRecord, entries: list[Entry]) -> None:
        """After the pulls, before the restart: the new image IDs and digests are known."""
        with self._write(f"recording the pulled images of unit {record.unit}") as cur:
            for row_id, entry in self._pairs(cur, record, entries):
                cur.execute(
                    "UPDATE updates SET new_digest = ?, new_image_id = ? WHERE id = ?",
                    (entry.new_digest, entry.new_image_id, row_id),
                )

    def outcome(self, record: IntentRecord, entries: list[Entry]) -> None:
        """After the restart (and rollback): each container's result and error; the intent is done."""
        with self._write(f"recording the outcome of unit {record.unit}") as cur:
            for row_id, entry in self._pairs(cur, record, entries):
                cur.execute(
                    "UPDATE updates SET result = ?, error = ?, new_digest = ?, new_image_id = ? WHERE id = ?",
                    (str(entry.updated), entry.error, entry.new_digest, entry.new_image_id, row_id),
                )
            # A container that is in the record but not among the entries was not touched.
            cur.execute(
                "UPDATE updates SET result = 'false' WHERE intent = ? AND result = ?", (record.intent, IN_PROGRESS)
            )
            cur.execute("UPDATE intents SET state = ?, finished = ? WHERE id = ?", (DONE, now(), record.intent))

    def _pairs(self, cur: sqlite3.Cursor, record: IntentRecord, entries: Sequence[Entry]) -> list[tuple[int, Entry]]:
        """Match entries to the record's rows by container ID (then name)."""
        found = cur.execute(
            "SELECT id, container_id, container_name FROM updates WHERE intent = ?", (record.intent,)
        ).fetchall()
        by_id = {row["container_id"]: int(row["id"]) for row in found if row["container_id"]}
        by_name = {row["container_name"]: int(row["id"]) for row in found}
        pairs = []
        for entry in entries:
            row_id = by_id.get(entry.container_id) or by_name.get(entry.container_name)
            if row_id is not None:
                pairs.append((row_id, entry))
        return pairs

    def remember(self, seen: Iterable[tuple[str, ContainerInfo]]) -> None:
        """The units the engine saw running a labelled container, for update_failed_units."""
        items = list(seen)
        if not items:
            return
        stamp = now()
        with self._write("remembering the units of this run") as cur:
            for unit, container in items:
                cur.execute(
                    "INSERT INTO units (unit, container_name, container_id, reference, policy, authfile, image_id, "
                    "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (unit, container_name) DO UPDATE SET "
                    "container_id = excluded.container_id, reference = excluded.reference, policy = excluded.policy,"
                    " authfile = excluded.authfile, image_id = excluded.image_id, last_seen = excluded.last_seen",
                    (
                        unit,
                        container.name,
                        container.id,
                        container.raw_image_name,
                        container.labels.get(AUTOUPDATE_LABEL, ""),
                        container.labels.get(AUTHFILE_LABEL),
                        container.image_id,
                        stamp,
                    ),
                )

    # -- reading -----------------------------------------------------------------------------

    _ROW_SQL = (
        "SELECT u.id, u.intent, i.started AS time, i.finished, i.run_id, i.action, i.unit, u.container_id, "
        "u.container_name, u.reference, u.policy, u.old_digest, u.new_digest, u.old_image_id, u.new_image_id, "
        "u.result, u.error FROM updates u JOIN intents i ON i.id = u.intent"
    )

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        try:
            return list(self.db.execute(sql, params).fetchall())
        except sqlite3.Error as err:
            raise HistoryError(f"reading the history database {self.path}: {err}; {_hint(err)}") from None

    def rows(self, container: str | None = None, limit: int | None = None) -> list[Row]:
        """Newest last; `container` matches a name or an ID prefix (at least 3 characters)."""
        sql, params = self._ROW_SQL, []
        if container:
            sql += " WHERE u.container_name = ? OR (length(?) >= 3 AND u.container_id LIKE ? || '%')"
            params = [container, container, container]
        sql += " ORDER BY u.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Row(**dict(r)) for r in reversed(self._read(sql, params))]

    def pending(self) -> list[Intent]:
        """Intents still 'in progress': their daemon died before the outcome."""
        intents = self._read("SELECT * FROM intents WHERE state = ? ORDER BY id", (IN_PROGRESS,))
        found = []
        for intent in intents:
            rows = self._read(self._ROW_SQL + " WHERE u.intent = ? ORDER BY u.id", (intent["id"],))
            found.append(
                Intent(
                    id=int(intent["id"]),
                    run_id=str(intent["run_id"]),
                    action=str(intent["action"]),
                    unit=str(intent["unit"]),
                    started=str(intent["started"]),
                    rows=tuple(Row(**dict(r)) for r in rows),
                )
            )
        return found

    def record_of(self, intent: Intent) -> IntentRecord:
        return IntentRecord(intent.id, intent.unit, tuple(row.id for row in intent.rows))

    def last_change(self, container: str) -> Row | None:
        """The newest row for `container` that changed its image (result 'true')."""
        sql = self._ROW_SQL + (
            " WHERE (u.container_name = ? OR (length(?) >= 3 AND u.container_id LIKE ? || '%')) "
            "AND u.result = 'true' AND u.old_image_id != '' AND u.new_image_id != '' "
            "AND u.old_image_id != u.new_image_id ORDER BY u.id DESC LIMIT 1"
        )
        found = self._read(sql, (container, container, container))
        return Row(**dict(found[0])) if found else None

    def held(self, reference: str, digest: str) -> str | None:
        """When `digest` of `reference` was rolled back on request (`autoupdated rollback`), or None."""
        found = self._read(
            "SELECT i.started FROM updates u JOIN intents i ON i.id = u.intent WHERE i.action = 'rollback' "
            "AND u.result = 'rolled back' AND u.reference = ? AND u.old_digest = ? ORDER BY u.id DESC LIMIT 1",
            (reference, digest),
        )
        if not found:
            return None
        return f"`autoupdated rollback` at {found[0][0]}"

    def known_units(self) -> list[KnownUnit]:
        return [KnownUnit(**dict(r)) for r in self._read("SELECT * FROM units ORDER BY unit, container_name")]

    # -- notifications (autoupdated/events.py decides, the daemon records) ------------------

    def notified(self, target: str) -> dict[str, str]:
        """What `target` was last told, per container (and `@run` for run-level errors)."""
        found = self._read("SELECT key, state FROM notified WHERE target = ?", (target,))
        return {str(row["key"]): str(row["state"]) for row in found}

    def remember_notified(self, target: str, states: Mapping[str, str]) -> None:
        if not states:
            return
        stamp = now()
        with self._write("remembering the notifications sent") as cur:
            for key, state in states.items():
                cur.execute(
                    "INSERT INTO notified (target, key, state, updated) VALUES (?, ?, ?, ?) ON CONFLICT "
                    "(target, key) DO UPDATE SET state = excluded.state, updated = excluded.updated",
                    (target, key, state, stamp),
                )

    def integrity(self) -> str:
        """`PRAGMA integrity_check`: "ok" when the file is sound."""
        return "\n".join(str(r[0]) for r in self._read("PRAGMA integrity_check"))


class _Guarded:
    """A write transaction whose SQLite errors become HistoryError with the file and a hint."""

    def __init__(self, history: History, what: str) -> None:
        self.history = history
        self.what = what
        self._cm: contextlib.AbstractContextManager[sqlite3.Cursor] | None = None

    def __enter__(self) -> sqlite3.Cursor:
        if self.history.readonly:
            raise HistoryError(f"history database {self.history.path} is open read-only")
        try:
            self._cm = self.history._transaction()
            return self._cm.__enter__()
        except sqlite3.Error as err:
            raise self._error(err) from None

    def __exit__(self, *exc: Any) -> None:
        assert self._cm is not None
        try:
            self._cm.__exit__(*exc)
        except sqlite3.Error as err:
            raise self._error(err) from None
        if exc[0] is not None and issubclass(exc[0], sqlite3.Error):
            raise self._error(exc[1]) from None

    def _error(self, err: BaseException) -> HistoryError:
        return HistoryError(f"{self.what} in the history database {self.history.path} failed: {err}; {_hint(err)}")




def rows_json(rows: Iterable[Row]) -> str:
    return json.dumps([row.as_dict() for row in rows], indent=2)
