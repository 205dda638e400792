"""What is worth telling people after a run, and the message that tells it (pure, no IO).

    run's entries and errors --events_of--> Events (one per container, one per run-level error)
    Events + what a target was last told --due--> the Events to send now, and the state to keep
    Events to send --compose--> one Message (title, body, kind) per run and target

"Notify once": a container's state is its event and digest (`updated sha256:2222...`); a
target is told when that state differs from the one it was last told, so a pending update or a
failing image is announced once, not at every run.  A container back to "up to date" resets
its state without a message, so the next failure of the same digest is told again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from autoupdated.model import Entry, Status

_KIND_OF_STATUS = {
    Status.PENDING: "update_available",
    Status.UPDATED: "updated",
    Status.ROLLED_BACK: "rolled_back",
    Status.FAILED: "failed",
}
QUIET = "current"  # a container up to date: remembered, never sent
RUN_KEY = "@run"  # the state key of run-level errors

_HEADLINE = {
    "update_available": "UPDATE AVAILABLE",
    "updated": "UPDATED",
    "rolled_back": "ROLLED BACK",
    "failed": "FAILED",
    "error": "RUN ERROR",
}
_TITLE_WORD = {
    "update_available": "update available",
    "updated": "updated",
    "rolled_back": "rolled back",
    "failed": "failed",
    "error": "run error",
}
_ORDER = ("failed", "rolled_back", "error", "updated", "update_available")


def short(digest: str) -> str:
    """`sha256:` and the first 12 hex digits: enough to tell two images apart on a phone."""
    algorithm, sep, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}" if sep else digest[:12]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing to tell: a container's outcome, or a run-level error."""

    kind: str
    unit: str = ""
    container: str = ""
    image: str = ""
    old_digest: str = ""
    new_digest: str = ""
    error: str | None = None

    @property
    def key(self) -> str:
        return self.container or RUN_KEY

    @property
    def state(self) -> str:
        if self.kind == "error":
            return "error " + hashlib.sha256((self.error or "").encode()).hexdigest()[:16]
        return f"{self.kind} {self.new_digest}"


@dataclass(frozen=True, slots=True)
class Observed:
    """A run as notifications see it: its events and the containers found up to date."""

    events: tuple[Event, ...]
    quiet: Mapping[str, str]  # container -> QUIET state
    clean: bool  # no run-level error: a remembered one is forgotten


def events_of(entries: Iterable[Entry], errors: Sequence[str], run_error: str | None = None) -> Observed:
    """The events of one run.  Errors that name a failed container are told with it, not twice."""
    events: list[Event] = []
    quiet: dict[str, str] = {}
    told: list[str] = []
    for entry in entries:
        kind = _KIND_OF_STATUS.get(entry.updated)
        if kind is None:
            quiet[entry.container_name] = f"{QUIET} {entry.new_digest or entry.old_digest}"
            continue
        events.append(
            Event(kind, entry.unit, entry.container_name, entry.image, entry.old_digest, entry.new_digest, entry.error)
        )
        if kind in ("failed", "rolled_back"):
            told += [entry.container_name, entry.unit]
    run_errors = [run_error] if run_error else []
    run_errors += [text for text in errors if not any(name and name in text for name in told)]
    if run_errors:
        events.append(Event("error", error="; ".join(dict.fromkeys(run_errors))))
    return Observed(tuple(events), quiet, clean=not run_errors)


def due(observed: Observed, told: Mapping[str, str], wanted: Iterable[Event]) -> tuple[list[Event], dict[str, str]]:
    """Which of the `wanted` events a target last told `told` should hear, and the states to
    remember once it has (including quiet resets, which send nothing)."""
    send = [event for event in wanted if told.get(event.key) != event.state]
    remember = {event.key: event.state for event in send}
    for container, state in observed.quiet.items():
        if container in told and told[container] != state:
            remember[container] = state
    if observed.clean and RUN_KEY in told and told[RUN_KEY] != QUIET:
        remember[RUN_KEY] = QUIET
    return send, remember


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    kind: str  # Apprise's notify type: info, success, warning, failure


def _kind(kinds: set[str]) -> str:
    if kinds & {"failed", "error"}:
        return "failure"
    if "rolled_back" in kinds:
        return "warning"
    if "updated" in kinds:
        return "success"
    return "info"


def _advice(event: Event) -> list[str]:
    if event.kind == "failed":
        return [
            f"cause: {event.error or 'see the journal'}",
            f"look: journalctl -u {event.unit} -n 50",
            f"go back: autoupdated rollback {event.container}",
        ]
    if event.kind == "rolled_back":
        return [
            f"cause: {event.error or 'the new image did not start or stay healthy'}",
            "the old image runs again; the next run tries the new one again",
            f"look: journalctl -u {event.unit} -n 50",
        ]
    if event.kind == "update_available":
        return ["apply: autoupdated trigger (with dry_run = false), or wait for the next run"]
    if event.kind == "updated":
        return [f"undo: autoupdated rollback {event.container}"]
    return []


def _lines(event: Event) -> list[str]:
    if event.kind == "error":
        return [
            "RUN ERROR",
            f"  cause: {event.error}",
            "  look: journalctl -u autoupdated -n 50; the next run tries again",
        ]
    lines = [f"{_HEADLINE[event.kind]}: {event.container} ({event.unit})", f"  image: {event.image}"]
    if event.old_digest or event.new_digest:
        lines.append(f"  digest: {short(event.old_digest) or '?'} -> {short(event.new_digest) or '?'}")
    lines += [f"  {line}" for line in _advice(event)]
    return lines


def compose(events: Sequence[Event], host: str, run: int | None = None) -> Message:
    """One message for a run's events: a title that counts them, a body of one block each."""
    ordered = sorted(events, key=lambda event: (_ORDER.index(event.kind), event.unit, event.container))
    counts: dict[str, int] = {}
    for event in ordered:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    summary = ", ".join(f"{count} {_TITLE_WORD[kind]}" for kind, count in counts.items())
    title = f"autoupdated on {host}: {summary}"
    body = "\n".join(line for event in ordered for line in _lines(event))
    if run is not None:
        body += f"\n\n(run {run}; autoupdated status, journalctl -u autoupdated)"
    return Message(title, body, _kind(set(counts)))


def daemon_message(host: str, what: str, detail: str = "") -> Message:
    """A `daemon` event: started, stopping, a configuration rejected."""
    failure = "rejected" in what
    body = detail or what
    if failure:
        body += "\nThe configuration in force stays unchanged. Fix the file, then `systemctl reload autoupdated`."
    return Message(f"autoupdated on {host}: {what}", body, "failure" if failure else "info")


def probe_message(host: str, target: str) -> Message:
    return Message(
        f"autoupdated on {host}: test notification",
        f"This is a test from `autoupdated notify test` for target {target}. If you read it, it works.",
        "info",
    )
