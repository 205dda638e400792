"""`autoupdated rollback CONTAINER`: put back the image a container ran before its last update.

The old image (pulled again by digest if it was pruned) is tagged with the container's
reference, the unit is restarted and must pass the health gate (engine/unit.py, as in a run); if
it does not, the current image is put back.  The rollback is recorded in the history like an
update (action `rollback`), so a crash in the middle of it is finished by recovery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from autoupdated.engine.ledger import Ledger, Notes
from autoupdated.engine.options import Options
from autoupdated.engine.ports import Adapters
from autoupdated.engine.recovery import ensure_image
from autoupdated.engine.task import Task
from autoupdated.engine.unit import UnitUpdater
from autoupdated.errors import BusUnavailable, RunError
from autoupdated.model import Entry, IntentRecord, Row, Status


class RollbackError(Exception):
    """The rollback was refused or did not work; the text says why and what state resulted."""


class RollbackHistory(Protocol):
    def last_change(self, container: str) -> Row | None: ...
    def intent(self, unit: str, entries: list[Entry]) -> IntentRecord: ...
    def step(self, record: IntentRecord, entries: list[Entry]) -> None: ...
    def outcome(self, record: IntentRecord, entries: list[Entry]) -> None: ...


def local_time(text: str) -> str:
    """A recorded ISO time as the host shows it."""
    try:
        return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


async def roll_back(options: Options, adapters: Adapters, history: RollbackHistory, container: str) -> str:
    """Undo the last recorded image change of `container`; returns what was done.  Closes `adapters`."""
    try:
        return await _roll_back(options, adapters, history, container)
    finally:
        await adapters.aclose()


async def _roll_back(options: Options, adapters: Adapters, history: RollbackHistory, container: str) -> str:
    row = history.last_change(container)
    if row is None:
        raise RollbackError(
            f"no recorded update changed the image of container {container}: nothing to roll back "
            f"(see `autoupdated history --container {container}`)"
        )
    state = await adapters.podman.container_state(row.container_name)
    if state is not None and state.running and state.image_id == row.old_image_id:
        raise RollbackError(
            f"container {row.container_name} already runs its previous image {row.old_image_id[:12]} "
            f"({row.reference}): nothing to roll back"
        )
    if state is not None and state.running and state.image_id != row.new_image_id:
        raise RollbackError(
            f"container {row.container_name} runs image {state.image_id[:12]}, not {row.new_image_id[:12]} "
            f"of its last recorded update ({local_time(row.time)}): it was changed outside autoupdated; "
            "not rolling back"
        )
    try:
        await adapters.restarter.connect()
    except BusUnavailable as err:
        raise RunError(str(err)) from None
    task = Task.moving(
        row.entry(),
        from_image=(row.new_image_id, row.new_digest),
        to_image=(row.old_image_id, row.old_digest),
        container_id=state.id if state is not None else None,
        authfile=options.authfile,
    )
    task.status, task.error = Status.FAILED, None
    record = history.intent(row.unit, [task.entry()])
    try:
        await ensure_image(adapters, options, task, row.old_image_id, row.old_digest)
        await adapters.podman.tag(row.old_image_id, row.reference)
        history.step(record, [task.entry()])
    except Exception as err:
        task.error = f"putting the previous image {row.old_image_id[:12]} back failed: {err}"
        history.outcome(record, [task.entry()])
        raise RollbackError(f"{task.error}; nothing was changed") from None
    notes = Notes()
    updater = UnitUpdater(options, adapters.podman, adapters.restarter, notes, Ledger(None, notes))
    failure = await updater.restart(row.unit) or await updater.verify(row.unit, [task])
    if failure is not None:
        await updater.roll_back(row.unit, [task], failure)
        restored = task.status is Status.ROLLED_BACK
        task.status = Status.FAILED
        task.error = f"the previous image {row.old_image_id[:12]} did not come up in unit {row.unit}: {failure}; " + (
            f"the current image {row.new_image_id[:12]} was put back"
            if restored
            else f"putting the current image back failed too: {'; '.join(notes.result.errors)}"
        )
        history.outcome(record, [task.entry()])
        raise RollbackError(task.error) from None
    task.status, task.error = Status.ROLLED_BACK, None
    history.outcome(record, [task.entry()])
    return (
        f"Rolled back container {row.container_name} in unit {row.unit} to its previous image "
        f"{row.old_image_id[:12]} ({row.reference}{', ' + row.old_digest if row.old_digest else ''})"
    )
