from datetime import UTC, datetime

from autoupdated.controls.approval import approve, next_wakeup
from autoupdated.controls.model import Waiting

DB = Waiting("db", "container-db.service", "r/db:latest", "sha256:new", "approval", "waiting for approval")
WEB = Waiting(
    "web", "container-web.service", "r/web:latest", "sha256:w", "window", "waits", "2026-12-02T02:00:00+00:00"
)


def test_approving_a_container_or_its_unit_takes_the_waiting_digest():
    assert approve([DB, WEB], "db", None).approved == (DB,)
    assert approve([DB, WEB], "container-db.service", "sha256:new").approved == (DB,)


def test_an_approval_of_a_digest_that_has_moved_is_refused_with_both_digests():
    result = approve([DB], "db", "sha256:old")
    assert not result.approved
    assert "moved" in result.refused and "sha256:old" in result.refused and "sha256:new" in result.refused


def test_approving_what_does_not_wait_for_approval_is_refused_and_says_why():
    assert "nothing waits for an approval" in approve([DB, WEB], "web", None).refused
    assert "no container or unit of that name" in approve([DB], "cache", None).refused


def test_the_wakeup_is_the_first_future_eligible_time():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert next_wakeup([DB, WEB], now) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert next_wakeup([DB], now) is None
    assert next_wakeup([WEB], datetime(2026, 12, 3, tzinfo=UTC)) is None, "a past moment never loops"
