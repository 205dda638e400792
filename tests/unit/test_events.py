"""What is told and when (autoupdated/events.py): notify once, grouping, the message's words."""

from __future__ import annotations

from autoupdated import events as ev
from autoupdated.model import Entry, Status

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def entry(name: str, status: Status, new: str = NEW, error: str | None = None) -> Entry:
    return Entry(
        f"container-{name}.service", name * 12, name, f"r.test/{name}", "registry", status, OLD, new, error=error
    )


def test_each_outcome_is_an_event_and_up_to_date_is_quiet() -> None:
    observed = ev.events_of(
        [entry("a", Status.UPDATED), entry("b", Status.NOT_UPDATED), entry("c", Status.PENDING)], []
    )
    assert [(e.kind, e.container) for e in observed.events] == [("updated", "a"), ("update_available", "c")]
    assert set(observed.quiet) == {"b"} and observed.clean


def test_an_error_about_a_failed_container_is_told_with_it_not_twice() -> None:
    observed = ev.events_of(
        [entry("web", Status.FAILED, error="boom")],
        ["restarting unit container-web.service: boom", "registry.test: 503"],
    )
    kinds = [e.kind for e in observed.events]
    assert kinds == ["failed", "error"]
    assert observed.events[1].error == "registry.test: 503"


def test_due_tells_a_state_once_and_a_reset_lets_it_be_told_again() -> None:
    failing = ev.events_of([entry("web", Status.FAILED, error="x")], [])
    send, remember = ev.due(failing, {}, failing.events)
    assert len(send) == 1
    send, _ = ev.due(failing, remember, failing.events)
    assert send == []
    fine = ev.events_of([entry("web", Status.NOT_UPDATED, new="")], [])
    _, reset = ev.due(fine, remember, fine.events)
    assert reset == {"web": "current " + OLD}
    send, _ = ev.due(failing, {**remember, **reset}, failing.events)
    assert len(send) == 1


def test_compose_groups_a_run_with_the_worst_first() -> None:
    observed = ev.events_of([entry("a", Status.UPDATED), entry("b", Status.ROLLED_BACK, error="unhealthy")], [])
    message = ev.compose(observed.events, "host1", run=7)
    assert message.title == "autoupdated on host1: 1 rolled back, 1 updated"
    assert message.kind == "warning"
    assert message.body.index("ROLLED BACK: b") < message.body.index("UPDATED: a")
    assert "cause: unhealthy" in message.body and "journalctl -u container-b.service" in message.body
    assert "digest: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb" in message.body
    assert "(run 7;" in message.body
