from datetime import UTC, datetime, timedelta

from autoupdated.controls.decide import GO, decide
from autoupdated.controls.model import Controls, Mode
from autoupdated.controls.windows import parse_windows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_no_controls_go_on():
    assert decide(Controls(), container="c", new_digest="sha256:n", now=NOW) == GO


def test_notify_neither_pulls_nor_restarts():
    d = decide(Controls(mode=Mode.NOTIFY), container="c", new_digest="sha256:n", now=NOW)
    assert (d.pull, d.restart, d.waits_for) == (False, False, "notify") and "mode notify" in d.reason


def test_cooldown_holds_until_the_digest_is_old_enough_then_releases():
    controls = Controls(min_image_age=3600)
    seen = (NOW - timedelta(minutes=10)).timestamp()
    d = decide(controls, container="c", new_digest="sha256:n", now=NOW, first_seen=seen)
    assert (d.pull, d.restart) == (False, False) and d.eligible_at == NOW + timedelta(minutes=50)
    assert "eligible at 2026-12-01T12:50:00+00:00" in d.reason
    later = decide(controls, container="c", new_digest="sha256:n", now=NOW + timedelta(hours=1), first_seen=seen)
    assert later == GO


def test_approve_pulls_and_waits_for_the_approval_of_that_digest():
    controls = Controls(mode=Mode.APPROVE)
    d = decide(controls, container="db", new_digest="sha256:n", now=NOW)
    assert (d.pull, d.restart) == (True, False)
    assert "autoupdated approve db --digest sha256:n" in d.reason
    stale = decide(controls, container="db", new_digest="sha256:n2", now=NOW, approved_digest="sha256:n")
    assert stale.held, "an approval of another digest does not count"
    assert decide(controls, container="db", new_digest="sha256:n", now=NOW, approved_digest="sha256:n") == GO


def test_outside_a_window_pulls_and_waits_for_its_opening():
    controls = Controls(restart_window=parse_windows("02:00..05:00 UTC"))
    d = decide(controls, container="c", new_digest="sha256:n", now=NOW)
    assert (d.pull, d.restart, d.waits_for) == (True, False, "window")
    assert d.eligible_at == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert decide(controls, container="c", new_digest="sha256:n", now=NOW, ignore_windows=True) == GO
    assert decide(controls, container="c", new_digest="sha256:n", now=NOW.replace(hour=3)) == GO
