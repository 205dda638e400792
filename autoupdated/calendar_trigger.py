"""An APScheduler trigger firing at a systemd calendar expression's elapse times, computed by
systemd-analyze (autoupdated/calendar.py) a batch at a time and cached."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from autoupdated.calendar import Elapses, elapses

BATCH = 20


class CalendarTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    def __init__(self, expression: str, *, jitter: int | None = None) -> None:
        self.expression = expression
        self.jitter = jitter
        self._base: datetime | None = None
        self._cache: Elapses | None = None

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        start = now if previous_fire_time is None else max(previous_fire_time + timedelta(microseconds=1), now)
        moment = self._next(start)
        if moment is None:
            return None
        return self._apply_jitter(moment, self.jitter, now)  # type: ignore[no-any-return]

    def _next(self, start: datetime) -> datetime | None:
        for _ in range(3):
            cached = self._cache
            if cached is not None and self._base is not None and self._base <= start:
                found = [t for t in cached.times if t >= start]
                if found:
                    return found[0]
                if len(cached.times) < BATCH:
                    return None  # systemd says it never elapses again
            base = datetime.fromtimestamp(math.floor(start.timestamp()) - 1, start.tzinfo)
            self._cache, self._base = elapses(self.expression, iterations=BATCH, after=base), base
        return None

    def __str__(self) -> str:
        return f"calendar[{self.expression}]"

    def __repr__(self) -> str:
        return f"<CalendarTrigger ({self.expression!r})>"
