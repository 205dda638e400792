"""Finishing what a dead daemon left half done.

The engine records an intent for every unit before its pulls and the outcome after its restart
and health gate (adapters/history.py).  An intent still 'in progress' at the next start means the
daemon was killed (SIGKILL, OOM, power cut) somewhere between the pull and a proven restart.  For
each such unit, once systemd has no job left for it:

    the unit is active, its containers run the new images   -> the health gate: passed: true;
                                                               failed: rolled back
    the unit is active, its containers run the old images   -> it was never restarted: the old
                                                               images are tagged again (unless this
                                                               recovery proved the new one in another
                                                               unit); pending, the next run updates it
    anything else (failed, stopped, crash-looping, missing   -> rolled back (re-tag the old images,
    or mixed containers)                                       restart), then checked

so no unit stays stopped or on an image that was never proven.  An old image that is gone from
local storage (pruned) is pulled again by its digest first.  Restarts, the gate and rollbacks
are engine/unit.py's, as in a run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from autoupdated.engine.ledger import Ledger, Notes
from autoupdated.engine.options import Options
from autoupdated.engine.ports import Adapters, UnitsPort
from autoupdated.engine.task import Task
from autoupdated.engine.unit import UnitUpdater
from autoupdated.errors import BusUnavailable, HistoryError, NoSuchObject, RunError
from autoupdated.model import (
    ContainerState,
    Entry,
    Intent,
    IntentRecord,
    KnownUnit,
    Policy,
    RunResult,
    Status,
    UnitState,
)
from autoupdated.reference import parse_for_autoupdate

log = logging.getLogger("autoupdated")


class RecoveryError(Exception):
    """Why an interrupted update had to be rolled back."""


class RecoveryHistory(Protocol):
    path: Path

    def pending(self) -> list[Intent]: ...
    def known_units(self) -> list[KnownUnit]: ...
    def record_of(self, intent: Intent) -> IntentRecord: ...
    def outcome(self, record: IntentRecord, entries: list[Entry]) -> None: ...


async def settled(units: UnitsPort, unit: str, wait: float, poll: float = 0.5) -> UnitState:
    """The unit's state once no job runs for it and it is not half-way (waiting at most `wait` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        state = await units.state(unit)
        if not state.busy or loop.time() >= deadline:
            return state
        await asyncio.sleep(poll)


async def ensure_image(adapters: Adapters, options: Options, task: Task, image_id: str, digest: str) -> None:
    """Make sure `image_id` is in local storage: pull `name@digest` when it is not."""
    try:
        await adapters.podman.image_id(image_id)
        return
    except NoSuchObject:
        pass
    if not digest or task.policy is not Policy.REGISTRY:
        raise RecoveryError(
            f"the previous image {image_id[:12]} of container {task.container.name} is no longer in local "
            "storage and cannot be pulled again (no digest recorded or not a registry image)"
        )
    ref = parse_for_autoupdate(task.raw_image)
    by_digest = f"{ref.name}@{digest}"
    logging.getLogger("autoupdated.progress").info(
        "Pulling the previous image %s again (it was removed from local storage)", by_digest
    )
    credentials = await adapters.credentials_for(ref, task.authfile)
    pulled = await adapters.puller.pull(by_digest, credentials=credentials, tls_verify=options.tls_verify)
    if pulled != image_id:
        log.warning("pulling %s gave image %s, not %s; using it", by_digest, pulled[:12], image_id[:12])


def task_from_row(entry: Entry, authfile: str | None = None) -> Task:
    """The Task for one recorded container: the old image is what the container ran."""
    return Task.moving(
        entry,
        from_image=(entry.old_image_id, entry.old_digest),
        to_image=(entry.new_image_id, entry.new_digest),
        authfile=authfile,
    )


@dataclass
class _Plan:
    intent: Intent
    tasks: list[Task]
    state: UnitState
    containers: dict[str, ContainerState | None]

    @property
    def unit(self) -> str:
        return self.intent.unit

    def on(self, which: str) -> bool:
        """Every container runs its old (`which`="old") or new image, in an active unit."""
        if self.state.active_state != "active":
            return False
        for task in self.tasks:
            state = self.containers.get(task.container.name)
            wanted = task.container.image_id if which == "old" else (task.new_image_id or task.container.image_id)
            if state is None or not state.running or state.image_id != wanted:
                return False
        return True

    @property
    def changed(self) -> bool:
        return any(task.changes_image for task in self.tasks)

    def describe(self) -> str:
        parts = []
        for task in self.tasks:
            state = self.containers.get(task.container.name)
            if state is None:
                parts.append(f"container {task.container.name} does not exist")
            elif not state.running:
                parts.append(f"container {task.container.name} is {state.status or 'not running'}")
            elif state.image_id == task.new_image_id:
                parts.append(f"container {task.container.name} runs the new image {state.image_id[:12]}")
            elif state.image_id == task.container.image_id:
                parts.append(f"container {task.container.name} runs the previous image {state.image_id[:12]}")
            else:
                parts.append(f"container {task.container.name} runs image {state.image_id[:12]}")
        return f"unit {self.unit} is {self.state}; " + ", ".join(parts)


class Recovery:
    """Finishes every 'in progress' intent of one history database; see the module docstring."""

    def __init__(self, options: Options, adapters: Adapters, history: RecoveryHistory, units: UnitsPort) -> None:
        self.options = options
        self.a = adapters
        self.history = history
        self.units = units
        self.notes = Notes()
        self.updater = UnitUpdater(options, adapters.podman, adapters.restarter, self.notes, Ledger(None, self.notes))
        self.proven: dict[str, str] = {}  # reference -> image ID proven by a unit in this recovery
        self.plans: list[_Plan] = []

    async def run(self, intents: list[Intent]) -> RunResult:
        authfiles = {(k.unit, k.container_name): k.authfile for k in self.history.known_units()}
        self.notes.progress(f"Finishing {len(intents)} interrupted unit update(s) found in {self.history.path}")
        for intent in intents:
            tasks = [
                task_from_row(row.entry(), authfiles.get((row.unit, row.container_name)) or None)
                for row in intent.rows
            ]
            state = await settled(self.units, intent.unit, wait=self.options.restart_timeout)
            containers = {t.container.name: await self.a.podman.container_state(t.container.name) for t in tasks}
            self.plans.append(_Plan(intent, tasks, state, containers))
        # Units already on their new images first: what they prove decides the others' tags.
        self.plans.sort(key=lambda p: (not (p.changed and p.on("new")), p.intent.id))
        for plan in self.plans:
            await self.finish(plan)
        result = self.notes.result
        for plan in sorted(self.plans, key=lambda p: p.unit):
            for task in plan.tasks:
                result.entries.append(task.entry())
                if self.a.journal is not None:
                    self.a.journal.outcome(task.entry())
        result.pulled = list(self.a.puller.pulled)
        result.finished = time.time()
        return result

    async def finish(self, plan: _Plan) -> None:
        unit, started = plan.unit, plan.intent.started
        if plan.state.load_state not in ("loaded", ""):
            message = (
                f"unit {unit} is {plan.state.load_state} now (its unit file is gone?): the interrupted update "
                f"of {started} cannot be finished; its previous images are tagged again"
            )
            await self.retag_old(plan)
            for task in plan.tasks:
                task.status, task.error = Status.FAILED, message
            self.notes.error(message)
        elif plan.on("old"):
            retagged = await self.retag_old(plan)
            note = f"; its previous image was tagged again ({', '.join(retagged)})" if retagged else ""
            for task in plan.tasks:
                task.status = Status.PENDING
                task.error = (
                    f"autoupdated stopped before restarting unit {unit} (update of {started}): it still runs "
                    f"its previous image{note}; the next run updates it"
                )
            self.notes.warn(f"unit {unit}: {plan.tasks[0].error}")
        elif plan.changed and plan.on("new"):
            await self.gate_new(plan)
        else:
            reason = RecoveryError(
                f"autoupdated was interrupted during the update of {started} and found {plan.describe()}"
            )
            self.notes.warn(f"{reason}; rolling back to the previous image")
            await self.roll_back(plan, reason)
        if plan.intent.action == "rollback":
            # An interrupted `autoupdated rollback`: its "new" image is the one rolled back to.
            for task in plan.tasks:
                if task.status is Status.UPDATED:
                    task.status = Status.ROLLED_BACK
                elif task.status is Status.ROLLED_BACK:
                    task.status = Status.FAILED
        try:
            self.history.outcome(self.history.record_of(plan.intent), [task.entry() for task in plan.tasks])
        except Exception as err:
            self.notes.error(f"{err}; the next start tries again")

    async def gate_new(self, plan: _Plan) -> None:
        self.notes.progress(f"Unit {plan.unit} runs its new image after an interrupted update: checking it")
        failure = await self.updater.verify(plan.unit, plan.tasks)
        if failure is not None:
            self.notes.warn(
                f"unit {plan.unit}: the interrupted update of {plan.intent.started} fails the health gate: {failure}"
            )
            await self.roll_back(plan, failure)
            return
        for task in plan.tasks:
            task.status, task.error = Status.UPDATED, None
            if task.new_image_id:
                self.proven[task.raw_image] = task.new_image_id

    async def retag_old(self, plan: _Plan) -> list[str]:
        """Point each reference back at the old image unless this recovery proved the tag's image."""
        done = []
        for task in plan.tasks:
            ref, old = task.raw_image, task.container.image_id
            if not old:
                continue
            try:
                current = await self.a.podman.image_id(ref)
            except Exception:
                current = ""
            if current == old or (current and self.proven.get(ref) == current):
                continue
            try:
                await ensure_image(self.a, self.options, task, old, task.image.digest if task.image else "")
                await self.a.podman.tag(old, ref)
                done.append(f"{ref} -> {old[:12]}")
            except Exception as err:
                self.notes.error(
                    task.fail(f"tagging the previous image {old[:12]} of container {task.container.name} again: {err}")
                )
        return done

    async def roll_back(self, plan: _Plan, reason: BaseException) -> None:
        """The unit's rollback (re-tag, restart), then make sure it came up on the old images."""
        unit = plan.unit
        for task in plan.tasks:
            try:
                await ensure_image(
                    self.a, self.options, task, task.container.image_id, task.image.digest if task.image else ""
                )
            except Exception as err:
                self.notes.error(task.fail(f"rolling back container {task.container.name} in unit {unit}: {err}"))
        if any(task.error for task in plan.tasks):
            return  # restarting without the old image would start the unproven one again
        await self.updater.roll_back(unit, plan.tasks, reason)
        if any(task.status is not Status.ROLLED_BACK for task in plan.tasks):
            return
        back = [dataclasses.replace(task, new_image_id=task.container.image_id) for task in plan.tasks]
        failure = await self.updater.verify(unit, back)
        if failure is not None:
            message = f"unit {unit} was rolled back to its previous image but does not come up: {failure}"
            self.notes.error(message)
            for task in plan.tasks:
                task.status, task.error = Status.FAILED, message


async def recover(options: Options, adapters: Adapters, history: RecoveryHistory) -> RunResult:
    """Finish the interrupted updates recorded in `history`; a RunResult like a run's.

    Raises RunError when podman or D-Bus cannot be reached or the history cannot be read (the
    intents stay recorded for the next try).  Closes `adapters`.
    """
    try:
        try:
            intents = history.pending()
        except HistoryError as err:
            raise RunError(str(err)) from None
        if not intents:
            result = RunResult()
            result.finished = result.started
            return result
        if adapters.units is None:
            raise RunError("internal error: recovery needs systemd's unit states")
        try:
            await adapters.restarter.connect()
            await adapters.units.connect()
        except BusUnavailable as err:
            raise RunError(str(err)) from None
        return await Recovery(options, adapters, history, adapters.units).run(intents)
    finally:
        await adapters.aclose()
