"""What a run says and what it writes down: its notes (errors, warnings) and its history.

`Notes` collects the run's podman-style error and warning texts into its RunResult.  `Ledger`
is the engine's side of the history database (adapters/history.py): every unit restart is
written down before anything changes and finished after, and a history that cannot be written
keeps the unit from changing (the tasks say why) instead of stopping the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from autoupdated.engine.ports import HistoryPort
from autoupdated.engine.task import Task
from autoupdated.model import IntentRecord, RunResult, Status

log = logging.getLogger("autoupdated")
progress = logging.getLogger("autoupdated.progress")


class Notes:
    def __init__(self, result: RunResult | None = None) -> None:
        self.result = result or RunResult()

    def error(self, message: str) -> None:
        self.result.errors.append(message)
        log.error("%s", message)

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)
        log.warning("%s", message)

    def progress(self, message: str) -> None:
        """What the run is doing now (podman prints these lines too)."""
        progress.info("%s", message)

    def postpone(self, task: Task) -> None:
        """Stopping: an update found but not applied stays pending for the next run."""
        task.status, task.prepared = Status.PENDING, False
        self.warn(f"not updating container {task.container.name} ({task.container.id[:12]}): autoupdated is stopping")


def members(tasks: Iterable[Task]) -> list[Task]:
    """The tasks a unit's restart concerns: every one not already failed, or with its image ready."""
    return [task for task in tasks if task.status is not Status.FAILED or task.prepared]


class Ledger:
    def __init__(self, history: HistoryPort | None, notes: Notes) -> None:
        self.history = history
        self.notes = notes
        self._records: dict[str, IntentRecord] = {}  # unit -> its record until the outcome

    @property
    def enabled(self) -> bool:
        return self.history is not None

    def record_intents(self, units: dict[str, list[Task]]) -> None:
        """Before any pull (a pull moves the tag): record every unit about to change, so a crash
        from here on is finished on the next start (engine/recovery.py)."""
        for unit, tasks in sorted(units.items()):
            if any(task.prepared and not task.hold for task in tasks):  # held (engine/controls.py): no restart now
                record = self.intent(unit, members(tasks))
                if record is not None:
                    self._records[unit] = record

    def take(self, unit: str) -> IntentRecord | None:
        return self._records.pop(unit, None)

    def intent(self, unit: str, tasks: list[Task]) -> IntentRecord | None:
        """Record what is about to happen; a unit whose intent cannot be recorded is not touched."""
        if self.history is None:
            return None
        try:
            return self.history.intent(unit, [task.entry() for task in tasks])
        except Exception as err:
            for task in tasks:
                if task.prepared:
                    self.notes.error(task.fail(f"not updating container {task.container.id} in unit {unit}: {err}"))
            return None

    def step(self, record: IntentRecord | None, tasks: list[Task]) -> None:
        if self.history is None or record is None:
            return
        try:
            self.history.step(record, [task.entry() for task in tasks])
        except Exception as err:
            self.notes.warn(f"unit {record.unit}: {err}")

    def outcome(self, record: IntentRecord | None, tasks: list[Task]) -> None:
        if self.history is None or record is None:
            return
        try:
            self.history.outcome(record, [task.entry() for task in tasks])
        except Exception as err:
            self.notes.warn(f"{err}; the next start of the daemon checks the unit again")

    def finish_untouched(self, unit: str, tasks: list[Task]) -> None:
        """Whatever kept the unit from its restart (failed pulls, a stop, the canary's rollback):
        its history record gets the outcome now."""
        record = self.take(unit)
        if record is not None:
            self.outcome(record, tasks)

    def held(self, task: Task) -> bool:
        """An update `autoupdated rollback` undid is not applied again (a newer image is)."""
        if self.history is None or not task.new_digest:
            return False
        try:
            when = self.history.held(task.raw_image, task.new_digest)
        except Exception as err:
            self.notes.warn(str(err))
            return False
        if when is None:
            return False
        self.notes.warn(
            f"container {task.container.name} ({task.container.id[:12]}): not updating to {task.new_digest} of "
            f'"{task.raw_image}": it was rolled back on request ({when}); a newer image will be applied'
        )
        return True

    def remember(self, units: dict[str, list[Task]]) -> None:
        if self.history is None:
            return
        try:
            self.history.remember((unit, task.container) for unit, tasks in units.items() for task in tasks)
        except Exception as err:
            self.notes.warn(str(err))
