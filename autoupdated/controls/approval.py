"""`autoupdated approve CONTAINER|UNIT [--digest D]`: which held updates an approval concerns,
or why it is refused (nothing waits for approval there; the digest has moved since)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from autoupdated.controls.model import Waiting


@dataclass(frozen=True, slots=True)
class Approval:
    approved: tuple[Waiting, ...] = ()
    refused: str = ""


def approve(held: list[Waiting], target: str, digest: str | None) -> Approval:
    matching = [w for w in held if target in (w.container, w.unit)]
    waiting = [w for w in matching if w.waits_for == "approval"]
    if not waiting:
        if matching:
            why = "; ".join(f"{w.container}: {w.reason}" for w in matching)
            return Approval(refused=f"{target}: nothing waits for an approval there ({why})")
        names = ", ".join(sorted({w.container for w in held if w.waits_for == "approval"})) or "none"
        return Approval(
            refused=f"{target}: no container or unit of that name waits for an approval (waiting: {names}); "
            "see `autoupdated status`"
        )
    if digest:
        moved = [w for w in waiting if w.digest != digest]
        if moved:
            now = ", ".join(f"{w.container} waits for {w.digest}" for w in moved)
            return Approval(
                refused=f"{target}: refused: the new image has moved since: you approved {digest}, but {now}; "
                "check it, then approve the digest that waits now"
            )
    return Approval(approved=tuple(waiting))


def next_wakeup(held: list[Waiting], now: datetime) -> datetime | None:
    """The earliest moment a held update may go on by itself (a window opens, a cooldown ends)."""
    moments = []
    for w in held:
        if w.eligible_at:
            try:
                moments.append(datetime.fromisoformat(w.eligible_at))
            except ValueError:
                continue
    future = [m for m in moments if m > now]  # past ones: the run that just held them saw that
    return min(future) if future else None
