"""What `autoupdated status` shows: one run's record, times as the host shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from autoupdated.model import RunResult


def local_timezone() -> tzinfo:
    from tzlocal import get_localzone  # only the daemon needs it

    try:
        return get_localzone()
    except Exception:
        return UTC


def fmt_time(moment: datetime | None, tz: tzinfo) -> str:
    if moment is None:
        return "none"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass
class RunRecord:
    """One run as `autoupdated status` shows it."""

    number: int
    reason: str
    started: datetime
    finished: datetime | None = None
    dry_run: bool = False
    ok: bool = False
    summary: str = ""
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entries: list[dict[str, str | None]] = field(default_factory=list)
    pruned: int | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step (RunResult.phases)

    def take(self, result: RunResult) -> None:
        """A finished run's outcome."""
        self.phases = {name: round(seconds, 4) for name, seconds in result.phases.items()}
        self.entries = [entry.as_dict() for entry in result.entries]
        self.errors = list(result.errors)
        self.warnings = list(result.warnings)
        self.ok = not result.failed
        self.summary = result.summary()

    @property
    def changed(self) -> bool:
        return any(entry.get("updated") in ("true", "rolled back") for entry in self.entries)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            key = entry.get("updated") or "unknown"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def fallback_summary(self) -> str:
        counts = self.counts()
        return (
            f"{len(self.entries)} containers: {counts.get('true', 0)} updated, "
            f"{counts.get('false', 0)} unchanged, {counts.get('failed', 0)} failed"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.number,
            "reason": self.reason,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "duration": (self.finished - self.started).total_seconds() if self.finished else None,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "summary": self.summary,
            "error": self.error,
            "errors": self.errors,
            "warnings": self.warnings,
            "entries": self.entries,
            "pruned_images": self.pruned,
            "phases": self.phases,
        }


def status_line(
    current: RunRecord | None, last: dict[str, Any] | None, next_run: datetime | None, tz: tzinfo, note: str | None
) -> str:
    """The STATUS= text: state, next run, last run's summary (one line, for `systemctl status`)."""
    state = f"Running run {current.number} ({current.reason})" if current is not None else "Idle"
    parts = [state, f"next run {fmt_time(next_run, tz)}"]
    if last is not None:
        finished = last.get("finished") or last.get("started")
        when = fmt_time(datetime.fromisoformat(finished), tz) if finished else "?"
        verdict = "" if last.get("ok") else "FAILED: "
        parts.append(f"last run {when}: {verdict}{last.get('summary')}")
    else:
        parts.append("last run: none yet")
    if note:
        parts.append(note)
    return "; ".join(parts)
