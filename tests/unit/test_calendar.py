"""systemd calendar schedules: systemd-analyze's output parsed, the trigger, config's Schedule."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from autoupdated import calendar
from autoupdated.calendar import CalendarError, elapses, parse_output
from autoupdated.calendar_trigger import CalendarTrigger
from autoupdated.config import Schedule

UTC_OUTPUT = """\
  Original form: Mon..Fri *-*-* 03:00
Normalized form: Mon..Fri *-*-* 03:00:00
    Next elapse: Wed 2026-12-02 03:00:00 UTC
       From now: 6h left
       Iter. #2: Thu 2026-12-03 03:00:00 UTC
       From now: 1 day 6h left
"""
CET_OUTPUT = """\
  Original form: daily
Normalized form: *-*-* 00:00:00
    Next elapse: Wed 2026-12-02 00:00:00 CET
       (in UTC): Tue 2026-12-01 23:00:00 UTC
       From now: 2h 44min left
       Iter. #2: Thu 2026-12-03 00:00:00 CET
       (in UTC): Wed 2026-12-02 23:00:00 UTC
"""

# systemd 257 (Debian 13), as `systemd-analyze calendar --iterations=3` prints it there.
SYSTEMD_257_OUTPUT = """\
Normalized form: *-*-* *:*:00/20
    Next elapse: Tue 2026-12-01 23:38:20 UTC
       From now: 11s left
   Iteration #2: Tue 2026-12-01 23:38:40 UTC
       From now: 31s left
   Iteration #3: Tue 2026-12-01 23:39:00 UTC
       From now: 51s left
"""


def test_output_in_utc_and_in_another_zone_gives_utc_times():
    assert parse_output(UTC_OUTPUT).times == (
        datetime(2026, 12, 2, 3, tzinfo=UTC),
        datetime(2026, 12, 3, 3, tzinfo=UTC),
    )
    cet = parse_output(CET_OUTPUT)
    assert cet.normalized == "*-*-* 00:00:00"
    assert cet.times == (datetime(2026, 12, 1, 23, tzinfo=UTC), datetime(2026, 12, 2, 23, tzinfo=UTC))


def test_systemd_257s_iteration_lines_are_read_too():
    """Missing them left one elapse per batch, which the trigger takes for "never again"."""
    assert parse_output(SYSTEMD_257_OUTPUT).times == (
        datetime(2026, 12, 1, 23, 38, 20, tzinfo=UTC),
        datetime(2026, 12, 1, 23, 38, 40, tzinfo=UTC),
        datetime(2026, 12, 1, 23, 39, tzinfo=UTC),
    )


def test_the_trigger_keeps_firing_on_systemd_257_output(monkeypatch):
    monkeypatch.setattr("autoupdated.calendar_trigger.BATCH", 3)
    monkeypatch.setattr("autoupdated.calendar_trigger.elapses", lambda *a, **kw: parse_output(SYSTEMD_257_OUTPUT))
    trigger = CalendarTrigger("*-*-* *:*:00/20")
    first = trigger.get_next_fire_time(None, datetime(2026, 12, 1, 23, 38, 10, tzinfo=UTC))
    assert first == datetime(2026, 12, 1, 23, 38, 20, tzinfo=UTC)
    assert trigger.get_next_fire_time(first, first) == datetime(2026, 12, 1, 23, 38, 40, tzinfo=UTC)


def test_systemd_rejecting_an_expression_is_a_clear_error():
    def run(args):
        return subprocess.CompletedProcess(args, 1, "", "Failed to parse calendar specification 'x': Invalid argument")

    with pytest.raises(CalendarError, match="not a valid systemd calendar expression"):
        elapses("x", run=run)


def test_without_systemd_analyze_the_error_says_to_use_cron(monkeypatch):
    monkeypatch.setattr(calendar.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="systemd-analyze is not installed"):
        Schedule.parse("Mon..Fri *-*-* 03:00")
    assert Schedule.parse("0 3 * * *").cron == "0 3 * * *", "cron needs no systemd"


def test_the_trigger_asks_systemd_once_per_batch(monkeypatch):
    calls = []

    def fake(expression, *, iterations, after):
        calls.append(after)
        return parse_output(UTC_OUTPUT)

    monkeypatch.setattr("autoupdated.calendar_trigger.elapses", fake)
    trigger = CalendarTrigger("Mon..Fri *-*-* 03:00:00")
    now = datetime(2026, 12, 1, 21, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, now)
    assert first == datetime(2026, 12, 2, 3, tzinfo=UTC)
    assert trigger.get_next_fire_time(first, first) == datetime(2026, 12, 3, 3, tzinfo=UTC)
    assert len(calls) == 1


needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


@needs_systemd
@pytest.mark.parametrize("text", ["Mon..Fri *-*-* 03:00", "*-*-* 00/6:00:00", "03:00", "Sat *-*-1..7 18:00"])
def test_schedules_fire_when_systemd_says(text):
    schedule = Schedule.parse(text)
    assert schedule.calendar is not None
    out = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=5", text], capture_output=True, text=True, check=True
    ).stdout
    expected = parse_output(out).times
    trigger = schedule.trigger()
    now = datetime.now(UTC)
    got = []
    previous = None
    for _ in range(5):
        previous = trigger.get_next_fire_time(previous, now)
        got.append(previous)
    assert tuple(got) == expected


@needs_systemd
def test_an_invalid_calendar_schedule_names_systemds_complaint():
    with pytest.raises(ValueError, match="Failed to parse calendar specification"):
        Schedule.parse("Caturday 03:00")
