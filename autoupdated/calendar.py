"""systemd calendar expressions (systemd.time(7): `daily`, `Mon..Fri *-*-* 03:00`,
`*-*-* 00/6:00:00`), validated and evaluated by systemd itself: `systemd-analyze calendar
--iterations=N [--base-time=@T] EXPR`.  Its output is parsed here (pure); running it is the one
IO, like config.py's reading of its file.  Where systemd-analyze is missing, a clear error says to
use a crontab expression instead."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

ANALYZE = "systemd-analyze"
# systemd 252 labels the later elapses "Iter. #2", systemd 257 (Debian 13) "Iteration #2".
_TIME_LINE = re.compile(r"^\s*(?P<label>Next elapse|Iter(?:\.|ation) #\d+|\(in UTC\)):\s*(?P<when>.+?)\s*$")
_WHEN = re.compile(r"^(?:\w{3} )?(?P<date>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?: (?P<zone>\S+))?$")


class CalendarError(ValueError):
    """Not a calendar expression systemd accepts, or systemd-analyze cannot be asked."""


@dataclass(frozen=True, slots=True)
class Elapses:
    normalized: str
    times: tuple[datetime, ...]  # UTC, ascending; empty: the expression never elapses again


def parse_output(text: str) -> Elapses:
    """`systemd-analyze calendar` output for one expression → its normalized form and elapse times
    in UTC.  A time in another zone is followed by its "(in UTC)" line, which is used instead."""
    normalized = ""
    times: list[datetime] = []
    pending_local = False
    for line in text.splitlines():
        if line.strip().startswith("Normalized form:"):
            normalized = line.split(":", 1)[1].strip()
            continue
        match = _TIME_LINE.match(line)
        if match is None:
            continue
        when = _WHEN.match(match["when"])
        if when is None:
            continue
        moment = datetime.strptime(when["date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        if match["label"] == "(in UTC)":
            if pending_local:
                times.append(moment)
                pending_local = False
        elif when["zone"] in (None, "UTC"):
            times.append(moment)
            pending_local = False
        else:
            pending_local = True  # its UTC form is on the next line
    if not normalized:
        raise CalendarError(f"systemd-analyze printed no normalized form: {text.strip()[:200]!r}")
    return Elapses(normalized, tuple(times))


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)


def elapses(expression: str, *, iterations: int = 10, after: datetime | None = None, run: Runner = _run) -> Elapses:
    """The next `iterations` elapse times of `expression` after `after` (default: now), as systemd computes them."""
    if shutil.which(ANALYZE) is None and run is _run:
        raise CalendarError(
            f"{expression!r} looks like a systemd calendar expression, but {ANALYZE} is not installed here to "
            'evaluate it; use a crontab expression ("0 3 * * *"), a shorthand ("daily") or an interval ("every 6h")'
        )
    args = [ANALYZE, "calendar", f"--iterations={iterations}"]
    if after is not None:
        args.append(f"--base-time=@{int(after.timestamp())}")
    try:
        proc = run([*args, "--", expression])
    except (OSError, subprocess.SubprocessError) as err:
        raise CalendarError(f"cannot run {ANALYZE} to evaluate {expression!r}: {err}") from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise CalendarError(
            f"{expression!r} is not a valid systemd calendar expression ({message[-1] if message else 'rejected'}); "
            'see systemd.time(7), e.g. "Mon..Fri *-*-* 03:00" or "*-*-* 00/6:00:00"'
        )
    return parse_output(proc.stdout)
