from datetime import UTC, datetime

import pytest

from autoupdated.controls.windows import WindowError, next_opening, open_now, parse_window, parse_windows

TUE_23 = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # a Tuesday


def test_an_everyday_window_is_open_inside_and_closed_outside():
    (w,) = parse_windows("02:00..05:00 UTC")
    assert w.is_open(datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    assert w.is_open(datetime(2026, 12, 1, 4, 59, tzinfo=UTC))
    assert not w.is_open(datetime(2026, 12, 1, 5, 0, tzinfo=UTC))
    assert w.next_start(TUE_23) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def test_weekend_window_waits_for_saturday():
    windows = parse_windows(["Sat,Sun 02:00..05:00 UTC"])
    assert not open_now(windows, TUE_23)
    assert next_opening(windows, TUE_23) == datetime(2026, 12, 5, 2, 0, tzinfo=UTC)


def test_a_window_past_midnight_belongs_to_the_day_it_starts():
    windows = parse_windows("Mon..Fri 22:00..02:00 UTC")
    assert open_now(windows, TUE_23)
    assert open_now(windows, datetime(2026, 12, 2, 1, 59, tzinfo=UTC))  # Tuesday's window, Wednesday morning
    assert not open_now(windows, datetime(2026, 12, 6, 23, 0, tzinfo=UTC))  # a Sunday


def test_a_timezone_is_honoured():
    windows = parse_windows("02:00..03:00 Europe/Berlin")  # 01:00..02:00 UTC in winter
    assert open_now(windows, datetime(2026, 12, 1, 1, 30, tzinfo=UTC))
    assert not open_now(windows, datetime(2026, 12, 1, 2, 30, tzinfo=UTC))


def test_no_window_means_always_open():
    assert open_now((), TUE_23) and next_opening((), TUE_23) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("02:00-05:00", "is not a window"),
        ("Caturday 02:00..05:00", "not a day of the week"),
        ("25:00..26:00", "out of range"),
        ("02:00..02:00", "empty"),
        ("02:00..05:00 Mars/Olympus", "unknown timezone"),
    ],
)
def test_bad_windows_say_how_to_write_one(text, says):
    with pytest.raises(WindowError, match=says):
        parse_window(text)


def test_times_may_have_seconds():
    (w,) = parse_windows("12:00:30..12:10 UTC")
    assert not w.is_open(datetime(2026, 12, 1, 12, 0, 29, tzinfo=UTC))
    assert w.is_open(datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC))
