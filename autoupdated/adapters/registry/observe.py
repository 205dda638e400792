"""Who wants to know about registry traffic (the daemon's metrics): the one place that tells them.

The transport reports each request it sent (host, method, HTTP status or "error") and the
client each wait a 429 imposed.  Observers are plain callables; with none, nothing happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

RequestObserver = Callable[[str, str, str], None]  # registry host, method, status ("200", "error")
WaitObserver = Callable[[str, float], None]  # registry host, seconds waited

_requests: list[RequestObserver] = []
_waits: list[WaitObserver] = []


def watch(on_request: RequestObserver, on_wait: WaitObserver) -> Callable[[], None]:
    """Start telling these two; the returned callable stops it."""
    _requests.append(on_request)
    _waits.append(on_wait)

    def stop() -> None:
        with contextlib.suppress(ValueError):
            _requests.remove(on_request)
        with contextlib.suppress(ValueError):
            _waits.remove(on_wait)

    return stop


def request(host: str, method: str, status: int | str) -> None:
    for observer in list(_requests):
        observer(host, method, str(status))


def waited(host: str, seconds: float) -> None:
    for observer in list(_waits):
        observer(host, seconds)
