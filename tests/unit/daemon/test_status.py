"""A run's record keeps what each step of the run took (`autoupdated status --format json`)."""

from __future__ import annotations

from datetime import UTC, datetime

from autoupdated.cli import build_parser
from autoupdated.daemon.status import RunRecord
from autoupdated.model import RunResult


def test_a_run_record_carries_the_runs_phase_timings() -> None:
    result = RunResult(phases={"list": 0.01234, "images": 0.002, "check": 0.3})
    record = RunRecord(number=1, reason="schedule", started=datetime(2026, 12, 1, tzinfo=UTC))
    record.take(result)
    assert record.as_dict()["phases"] == {"list": 0.0123, "images": 0.002, "check": 0.3}


def test_check_takes_timings_and_leaves_it_off_by_default() -> None:
    parser = build_parser()
    assert parser.parse_args(["check", "--timings"]).timings is True
    assert parser.parse_args(["check"]).timings is False
