"""When runs happen: one APScheduler timer for the schedule, one for a missed run's catch-up.

`Persistent=true` as systemd timers do it: the stamp file's mtime is when the last scheduled run
was triggered; at start a scheduled time between the stamp and now was missed and is caught up
once (after a random part of `randomized_delay`).  The jobs only ask for a run (`fire(reason)`)
and return, with `max_instances=1` and `coalesce=True` so a late timer never fires twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from autoupdated.adapters import journal as journal_mod
from autoupdated.adapters.state import StateDir
from autoupdated.config import Settings
from autoupdated.daemon.logs import DaemonLog
from autoupdated.daemon.status import fmt_time

SCHEDULED_JOB = "scheduled-run"
CATCH_UP_JOB = "catch-up-run"


class Schedule:
    def __init__(
        self, state: StateDir, tz: tzinfo, log: DaemonLog, fire: Callable[[str], None], stopping: Callable[[], bool]
    ) -> None:
        self.state = state
        self.stopping = stopping
        self.tz = tz
        self.log = log
        self.fire = fire
        self._scheduler: AsyncIOScheduler | None = None

    def start(self, trigger: BaseTrigger) -> None:
        self._scheduler = AsyncIOScheduler(timezone=self.tz)
        self._scheduler.start()
        self.use(trigger)

    def use(self, trigger: BaseTrigger) -> None:
        """Put `trigger` in force (at start, and on a reload that changed the schedule)."""
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._scheduled,
            trigger,
            id=SCHEDULED_JOB,
            name="scheduled run",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)

    async def _scheduled(self) -> None:
        if not self.stopping():
            self.touch_stamp()
            self.fire("schedule")

    async def _catch_up(self) -> None:
        if not self.stopping():
            self.touch_stamp()
            self.fire("catch-up")

    def touch_stamp(self) -> None:
        try:
            self.state.touch_stamp()
        except OSError as err:
            self.log(
                journal_mod.WARNING,
                f"cannot write the timer stamp {self.state.stamp_path}: {err}; "
                "a run missed while the machine is off will not be caught up",
            )

    def missed_run(self, settings: Settings) -> datetime | None:
        """Persistent=true: the scheduled time missed since the stamp, or None.  No stamp: make one."""
        stamp = self.state.read_stamp()
        if stamp is None:
            self.touch_stamp()  # first start: from now on, missed runs are counted
            return None
        if not settings.persistent:
            return None
        due = settings.parsed_schedule.next_after(stamp, self.tz)
        if due is not None and due <= datetime.now(UTC):
            return due
        return None

    def catch_up(self, due: datetime, randomized_delay: float) -> None:
        assert self._scheduler is not None
        delay = random.uniform(0, randomized_delay)  # noqa: S311 - spreading load, not crypto
        when = datetime.now(UTC) + timedelta(seconds=delay)
        self.log(
            journal_mod.NOTICE,
            f"A scheduled run was missed ({fmt_time(due, self.tz)}, last run "
            f"triggered {fmt_time(self.state.read_stamp(), self.tz)}); catching up "
            f"{'now' if delay < 1 else 'at ' + fmt_time(when, self.tz)}",
            MISSED_RUN=due.isoformat(),
        )
        self._scheduler.add_job(
            self._catch_up,
            DateTrigger(when),
            id=CATCH_UP_JOB,
            name="catch-up run",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    def next_run_time(self) -> datetime | None:
        if self._scheduler is None:
            return None
        times = [job.next_run_time for job in self._scheduler.get_jobs() if job.next_run_time is not None]
        return min(times) if times else None
