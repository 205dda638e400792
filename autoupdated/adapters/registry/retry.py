"""When to ask a registry again: 429 with Retry-After, RateLimit-Remaining, 5xx (pure, no IO).

The registry client (autoupdated/adapters/registry/client.py) keeps one `HostBackoff` per registry host for
the run and asks it before each manifest request and after each answer:

* 429 Too Many Requests: wait what `Retry-After` says (seconds or an HTTP date; 1, 2, 4 s when it
  says nothing), at most `max_wait` (60 s), at most `max_tries` (3) times per request.  While a
  host is throttled every request to it waits for the same moment and they go one at a time, so
  many containers on one registry never turn into a burst.  A registry that asks for more than
  `max_wait`, or still refuses after `max_tries`, is not asked again in this run: every later
  request to it fails at once with the reason (the next run tries again).
* `RateLimit-Remaining: 0` (or `RateLimit: ..., remaining=0`): the answer is used, then the host is
  not asked again in this run.
* 5xx (except 501 and 505, which will not change): one more try after 0.5 to 2 s (jitter).
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

MAX_WAIT = 60.0
MAX_TRIES = 3
SERVER_RETRIES = 1
SERVER_DELAY = (0.5, 2.0)
_NO_RETRY_5XX = frozenset({501, 505})
_REMAINING_RE = re.compile(r"(?:^|[,;\s])remaining\s*=\s*(\d+)", re.IGNORECASE | re.ASCII)


def retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not str.isdigit alone: "²" is a digit that float() refuses
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())


def rate_limit_remaining(headers: Mapping[str, str]) -> int | None:
    """`RateLimit-Remaining: 0;w=21600` (Docker Hub) or `RateLimit: limit=10, remaining=0, reset=5`."""
    value = headers.get("RateLimit-Remaining")
    if value is not None:
        match = re.match(r"\s*(\d+)", value, re.ASCII)
        return int(match.group(1)) if match else None
    combined = headers.get("RateLimit")
    if combined is not None:
        match = _REMAINING_RE.search(combined)
        return int(match.group(1)) if match else None
    return None


@dataclass
class Decision:
    """What to do after an answer: `wait` seconds then try again, or give up with `reason`."""

    retry: bool
    wait: float = 0.0
    reason: str = ""


@dataclass
class HostBackoff:
    """The backoff state of one registry host for one run."""

    host: str
    max_wait: float = MAX_WAIT
    max_tries: int = MAX_TRIES
    server_retries: int = SERVER_RETRIES
    rand: Callable[[float, float], float] = random.uniform
    not_before: float = 0.0  # monotonic time before which nothing is sent to the host
    throttled: bool = False  # a 429 is not resolved yet: one request at a time
    exhausted: str | None = None  # why the host is not asked again in this run
    waits: list[float] = field(default_factory=list)  # every wait decided (for logs and tests)

    def after_429(self, tries: int, header: str | None, now: float) -> Decision:
        """Request number `tries` (1-based) got 429 with this Retry-After header."""
        asked = retry_after(header)
        wait = asked if asked is not None else float(2 ** (tries - 1))
        if asked is not None and asked > self.max_wait:
            self.exhausted = (
                f"it asked us to wait {asked:.0f} s (Retry-After), more than the {self.max_wait:g} s autoupdated "
                "waits within a run; the next run tries again"
            )
            return Decision(False, reason=self.exhausted)
        if tries >= self.max_tries:
            self.exhausted = (
                f"it still answered 429 Too Many Requests after {tries} tries; not asking it again in this run, "
                "the next run tries again"
            )
            return Decision(False, reason=self.exhausted)
        wait = min(wait, self.max_wait)
        self.throttled = True
        self.not_before = max(self.not_before, now + wait)
        self.waits.append(wait)
        return Decision(True, wait=wait)

    def after_server_error(self, tries: int, status: int) -> Decision:
        if status in _NO_RETRY_5XX or tries > self.server_retries:
            return Decision(False)
        wait = self.rand(*SERVER_DELAY)
        self.waits.append(wait)
        return Decision(True, wait=wait)

    def after_answer(self, status: int, headers: Mapping[str, str]) -> None:
        """Any answer that is not a 429: lift the throttle; note an exhausted rate limit."""
        if status != 429:
            self.throttled = False
        remaining = rate_limit_remaining(headers)
        if remaining == 0 and self.exhausted is None:
            reset = (headers.get("RateLimit-Reset") or "").strip()
            when = f" (it resets in {reset} s)" if reset.isascii() and reset.isdigit() else ""
            self.exhausted = (
                f"its rate limit is used up (RateLimit-Remaining: 0){when}; not asking it again in this run, "
                "the next run tries again"
            )
