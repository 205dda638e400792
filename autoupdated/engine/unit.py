"""Updating one unit: restart → health gate → roll back, and the canary order between units.

This is the one sequence that changes what a unit runs; the run (engine/run.py), crash
recovery (engine/recovery.py) and `autoupdated rollback` (engine/rollback.py) all go through it.

Canary order: the first unit ready (its pulls done; by name among units ready together) that
updates an image restarts alone; the other units on that image wait until it has proven the
image (restarted and passed the health gate), then go in parallel.  Canaries go ahead of
followers under the restart bound (engine/bound.py), so every image is proven as early as the
bound allows and only the last wave's settle time is left at the end of the run.  A rollback in the canary
keeps them off the bad image (podman would restart them onto it).  Every unit claims its images
in the same (sorted) order and waits at the first one another unit claimed, so the waits cannot
form a cycle.  Followers of one image never wait for another image's canary.
"""

from __future__ import annotations

import asyncio

from autoupdated.engine.bound import Rank, RestartBound
from autoupdated.engine.gate import HealthGate
from autoupdated.engine.ledger import Ledger, Notes, members
from autoupdated.engine.options import Options
from autoupdated.engine.ports import PodmanPort, RestarterPort
from autoupdated.engine.task import Task
from autoupdated.model import Status


class Canaries:
    """Which unit restarts onto each image first, and when it has proven the image."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        self._proof: dict[str, asyncio.Event] = {}

    async def wait_turn(self, unit: str, images: list[str]) -> bool:
        """Wait until every image `unit` does not lead is proven; whether it leads any."""
        leads = False
        for ref in sorted(images):
            canary = self._first.setdefault(ref, unit)
            if canary == unit:
                leads = True
            else:
                await self._proven(ref).wait()
        return leads

    def release(self, unit: str) -> None:
        for ref, canary in self._first.items():
            if canary == unit:
                self._proven(ref).set()

    def _proven(self, ref: str) -> asyncio.Event:
        return self._proof.setdefault(ref, asyncio.Event())


class UnitUpdater:
    def __init__(
        self,
        options: Options,
        podman: PodmanPort,
        restarter: RestarterPort,
        notes: Notes,
        ledger: Ledger,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.options = options
        self.podman = podman
        self.restarter = restarter
        self.notes = notes
        self.ledger = ledger
        self.stop = stop or asyncio.Event()
        self.gate = HealthGate(
            podman,
            settle_time=options.settle_time,
            health_timeout=options.health_timeout,
            poll_interval=options.poll_interval,
        )
        self.canaries = Canaries()
        self.rolled_back: dict[str, str] = {}  # raw image -> unit whose restart proved it bad
        self._bound = RestartBound(options.restart_concurrency)

    # -- the run's step ---------------------------------------------------------------------

    async def update(self, unit: str, tasks: list[Task]) -> None:
        """Restart `unit` onto its prepared images, in canary order; every task gets the outcome."""
        try:
            if any(task.prepared for task in tasks):
                leads = await self.canaries.wait_turn(unit, [task.raw_image for task in tasks if task.prepared])
                try:
                    await self._update(unit, tasks, canary=leads)
                finally:
                    self.canaries.release(unit)
        finally:
            self.ledger.finish_untouched(unit, tasks)

    async def _update(self, unit: str, tasks: list[Task], *, canary: bool) -> None:
        self._skip_proven_bad(unit, tasks)
        if not any(task.prepared for task in tasks):
            return
        async with self._bound.slot(Rank.CANARY if canary else Rank.UPDATE):
            if self.stop.is_set():
                for task in tasks:
                    self.notes.postpone(task)
                return
            ready = members(tasks)
            record = self.ledger.take(unit)
            if record is None:
                record = self.ledger.intent(unit, ready)
                if record is None and self.ledger.enabled:
                    return  # not recorded: no restart (the tasks say why)
            self.ledger.step(record, ready)
            failure = await self._restart(unit)
        # The bound is on restart jobs (what loads the machine); the gate only waits.
        if failure is None:
            failure = await self.verify(unit, ready)
        if failure is None:
            for task in ready:
                task.status, task.prepared = Status.UPDATED, False
        else:
            await self.undo(unit, ready, failure)
        self.ledger.outcome(record, ready)

    def _skip_proven_bad(self, unit: str, tasks: list[Task]) -> None:
        for task in tasks:
            if task.prepared and task.raw_image in self.rolled_back:
                self.notes.error(
                    task.fail(
                        f"not updating container {task.container.id} in unit {unit}: the new image of "
                        f'"{task.raw_image}" failed in unit {self.rolled_back[task.raw_image]} and was rolled back'
                    )
                )

    async def undo(self, unit: str, ready: list[Task], failure: Exception) -> None:
        """The update failed: roll back when asked to, else say so."""
        for task in ready:
            task.status, task.prepared = Status.FAILED, False
        if not self.options.rollback:
            self.notes.error(f"restarting unit {unit} during update: {failure}")
            for task in ready:
                task.error = str(failure)
            return
        self.notes.warn(f"restarting unit {unit} during update: {failure}; rolling back to the previous image")
        await self.roll_back(unit, ready, failure)

    # -- the steps ---------------------------------------------------------------------------

    async def _restart(self, unit: str) -> Exception | None:
        self.notes.progress(f"Restarting unit {unit}")
        try:
            await self.restarter.restart(unit)
        except Exception as err:
            return err
        self.notes.result.restarted_units.append(unit)
        return None

    async def restart(self, unit: str) -> Exception | None:
        """One restart under the run's bound, ahead of every update (it puts a service back, in
        a rollback or `autoupdated rollback`); the error, if it did not end in `done`."""
        async with self._bound.slot(Rank.ROLLBACK):
            return await self._restart(unit)

    async def verify(self, unit: str, tasks: list[Task]) -> Exception | None:
        """The health gate (when on); the reason, if the new containers are not up."""
        if not self.options.health_gate:
            return None
        try:
            await self.gate.verify(unit, tasks)
        except Exception as err:
            return err
        return None

    async def roll_back(self, unit: str, tasks: list[Task], cause: BaseException) -> None:
        """Re-tag every task's previous image with its name and restart the unit onto them."""
        for task in tasks:
            if task.changes_image:
                self.rolled_back.setdefault(task.raw_image, unit)
            try:
                await self.podman.tag(task.container.image_id, task.raw_image)
            except Exception as err:
                self.notes.error(
                    task.fail(f"rolling back image for container {task.container.id} in unit {unit}: {err}")
                )
        failure = await self.restart(unit)
        if failure is not None:
            message = f"restarting unit {unit} during rollback: {failure}"
            self.notes.error(message)
            for task in tasks:
                task.fail(message)
            return
        for task in tasks:
            if task.error is None:
                task.status = Status.ROLLED_BACK
                task.error = f"update failed and was rolled back: {cause}"
