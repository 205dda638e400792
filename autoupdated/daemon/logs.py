"""The daemon's journal entries: its own (`DaemonLog`) and Python logging's (`JournalHandler`).

Priorities and level names come from adapters/journal.py (one map); entries of the kinds an
operator must always see (a run's summary, a failed run, a configuration event) are logged at any
`log_level`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from autoupdated.adapters import journal as journal_mod

ALWAYS = frozenset((journal_mod.MESSAGE_ID_RUN, journal_mod.MESSAGE_ID_RUN_FAILED, journal_mod.MESSAGE_ID_CONFIG))


class DaemonLog:
    """One journal entry per call (stderr when there is no journal), filtered by `log_level`."""

    def __init__(self, journal: journal_mod.Journal, level: Callable[[], str]) -> None:
        self.journal = journal
        self.level = level

    def __call__(
        self, priority: int, message: str, *, message_id: str = journal_mod.MESSAGE_ID_DAEMON, **fields: object
    ) -> None:
        if priority > journal_mod.LEVELS[self.level()] and message_id not in ALWAYS:
            return
        sent = self.journal.send(message, priority=priority, fields={"MESSAGE_ID": message_id, **fields})
        if not sent or sys.stderr.isatty():
            name = journal_mod.LEVEL_NAMES.get(priority, "info")
            print(f"autoupdated: {name}: {message}", file=sys.stderr, flush=True)


class JournalHandler(logging.Handler):
    """Python logging (the engine's errors and progress, APScheduler's warnings) into the journal.

    Without it they would reach the journal twice or as unstructured stderr lines at the wrong
    priority.
    """

    def __init__(self, journal: journal_mod.Journal) -> None:
        super().__init__()
        self.journal = journal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            priority = journal_mod.priority_of(record.levelno)
            if not self.journal.send(message, priority=priority, fields={"LOGGER": record.name}):
                print(
                    f"autoupdated: {logging.getLevelName(record.levelno).lower()}: {message}",
                    file=sys.stderr,
                    flush=True,
                )
        except Exception:
            self.handleError(record)


def setup_logging(level: str, journal: journal_mod.Journal) -> None:
    """Route the `autoupdated` and `apscheduler` loggers to the journal at `log_level`."""
    handler = JournalHandler(journal)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name, logger_level in (
        ("autoupdated", journal_mod.python_level(level)),
        ("apscheduler", logging.DEBUG if level == "debug" else logging.WARNING),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logger_level)
    logging.getLogger("autoupdated.progress").setLevel(logging.NOTSET)
