"""Maintenance windows: `"02:00..05:00"` (every day), `"Sat,Sun 02:00..05:00"`, `"Mon..Fri 22:00..02:00"`
(past midnight: the window starts on the named day), optionally ending in a timezone
(`"02:00..05:00 Europe/Berlin"`); the host's timezone otherwise.  Times may have seconds
(`"02:00:30..02:10"`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() numbering
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW = re.compile(rf"^(?:(?P<days>[A-Za-z.,]+)\s+)?{_TIME}\s*\.\.\s*{_TIME}(?:\s+(?P<tz>\S+))?$")


class WindowError(ValueError):
    """A window that cannot be parsed; the text says how to write one."""


@dataclass(frozen=True, slots=True)
class Window:
    text: str
    days: frozenset[int]  # weekdays the window *starts* on (0 = Monday)
    start: time
    end: time
    tz: str | None = None  # IANA name; None: the host's timezone

    def zone(self, host: tzinfo) -> tzinfo:
        return ZoneInfo(self.tz) if self.tz else host

    def _length(self) -> timedelta:
        start = timedelta(hours=self.start.hour, minutes=self.start.minute, seconds=self.start.second)
        end = timedelta(hours=self.end.hour, minutes=self.end.minute, seconds=self.end.second)
        return end - start if end > start else end - start + timedelta(days=1)

    def _starts_near(self, now: datetime) -> list[datetime]:
        local = now.astimezone(self.zone(now.tzinfo or host_tz()))
        out = []
        for offset in range(-1, 9):
            day = local.date() + timedelta(days=offset)
            if day.weekday() in self.days:
                out.append(datetime.combine(day, self.start, tzinfo=local.tzinfo))
        return out

    def is_open(self, now: datetime) -> bool:
        return any(start <= now < start + self._length() for start in self._starts_near(now))

    def next_start(self, now: datetime) -> datetime:
        return min(start for start in self._starts_near(now) if start > now)

    def __str__(self) -> str:
        return self.text


def host_tz() -> tzinfo:
    tz = datetime.now().astimezone().tzinfo
    assert tz is not None
    return tz


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        low, sep, high = part.partition("..")
        try:
            first = DAYS.index(low[:3]) if len(low) >= 3 else -1
            last = DAYS.index(high[:3]) if sep else first
        except ValueError:
            first = last = -1
        if first < 0 or last < 0:
            raise WindowError(f'{part!r} is not a day of the week (use Mon..Sun, e.g. "Sat,Sun" or "Mon..Fri")')
        day = first
        days.add(day)
        while day != last:
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


def parse_window(text: str) -> Window:
    match = _WINDOW.match(" ".join(text.split()))
    if not match:
        raise WindowError(
            f'{text!r} is not a window; write "HH:MM..HH:MM", optionally after days and before a '
            'timezone, e.g. "02:00..05:00", "Sat,Sun 02:00..05:00", "Mon..Fri 22:00..02:00 Europe/Berlin"'
        )
    h1, m1, s1, h2, m2, s2 = (int(match.group(i) or 0) for i in (2, 3, 4, 5, 6, 7))
    if h1 > 23 or h2 > 24 or max(m1, m2, s1, s2) > 59 or (h2 == 24 and (m2 or s2)):
        raise WindowError(f"{text!r}: a time of day is out of range (00:00 to 24:00)")
    start, end = time(h1, m1, s1), time(0, 0) if h2 == 24 else time(h2, m2, s2)
    if start == end:
        raise WindowError(f"{text!r}: the window is empty (start and end are the same)")
    tz = match.group("tz")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise WindowError(
                f"{text!r}: unknown timezone {tz!r} (use an IANA name like Europe/Berlin or UTC)"
            ) from None
    days = _days(match.group("days")) if match.group("days") else frozenset(range(7))
    return Window(" ".join(text.split()), days, start, end, tz)


def parse_windows(value: str | list[str] | tuple[str, ...]) -> tuple[Window, ...]:
    texts = [value] if isinstance(value, str) else list(value)
    return tuple(parse_window(text) for text in texts if text.strip())


def open_now(windows: tuple[Window, ...], now: datetime) -> bool:
    """No window configured means always open."""
    return not windows or any(window.is_open(now) for window in windows)


def next_opening(windows: tuple[Window, ...], now: datetime) -> datetime | None:
    if not windows:
        return None
    return min(window.next_start(now) for window in windows)
