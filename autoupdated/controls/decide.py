"""Whether an update a run found goes on now: the one decision every control feeds.

    notify     check and report only              -> no pull, no restart
    cooldown   the new digest is younger than min  -> no pull, no restart, eligible at first seen + age
    approve    not approved for this digest        -> pull now, restart on `autoupdated approve`
    window     outside every restart window        -> pull now, restart at the window's start

The order matters: nothing is pulled for an update that may not be taken at all (notify,
cooldown); what is only waiting for a moment (approval, a window) is pulled at once, so the
restart at that moment is quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from autoupdated.controls.model import Controls, Mode
from autoupdated.controls.windows import next_opening, open_now


@dataclass(frozen=True, slots=True)
class Decision:
    pull: bool
    restart: bool
    waits_for: str = ""  # "" | "notify" | "cooldown" | "approval" | "window"
    reason: str = ""
    eligible_at: datetime | None = None  # when the wait ends by itself (cooldown, window)

    @property
    def held(self) -> bool:
        return not self.restart


GO = Decision(pull=True, restart=True)


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def decide(
    controls: Controls,
    *,
    container: str,
    new_digest: str,
    now: datetime,
    first_seen: float | None = None,
    approved_digest: str | None = None,
    ignore_windows: bool = False,
    age_from: str = "first seen",
) -> Decision:
    """`first_seen`: when this digest was first seen (epoch seconds; None without a record);
    `approved_digest`: the digest `autoupdated approve` allowed for this container, if any."""
    if controls.mode is Mode.NOTIFY:
        return Decision(
            False, False, "notify", f"update available ({new_digest}); mode notify: not pulled, not restarted"
        )
    if controls.min_image_age > 0:
        seen = first_seen if first_seen is not None else now.timestamp()
        eligible = datetime.fromtimestamp(seen, UTC) + timedelta(seconds=controls.min_image_age)
        if eligible > now:
            return Decision(
                False,
                False,
                "cooldown",
                f"new image {new_digest} {age_from} {_when(datetime.fromtimestamp(seen, UTC))}; "
                f"min_image_age {controls.min_image_age:g} s: eligible at {_when(eligible)}",
                eligible,
            )
    if controls.mode is Mode.APPROVE and approved_digest != new_digest:
        return Decision(
            True,
            False,
            "approval",
            f"new image {new_digest} pulled; waiting for approval: "
            f"autoupdated approve {container} --digest {new_digest}",
        )
    if not ignore_windows and not open_now(controls.restart_window, now):
        opens = next_opening(controls.restart_window, now)
        windows = ", ".join(str(w) for w in controls.restart_window)
        assert opens is not None
        return Decision(
            True,
            False,
            "window",
            f"new image {new_digest} pulled; restart waits for the restart window ({windows}), "
            f"next opening {_when(opens)}",
            opens,
        )
    return GO
