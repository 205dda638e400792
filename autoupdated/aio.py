"""Small asyncio pieces the parts and the adapters share: one answer per question, in flight.

A run asks many callers' questions once: the first asker starts the work, every other one
awaits the same future.  Its error reaches every asker, and none may be left for asyncio to log
as "exception was never retrieved" when no asker is left (a run that stopped early).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["retrieve", "shared"]

T = TypeVar("T")
K = TypeVar("K")


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a finished future's error as seen (its askers get it; asyncio need not log it)."""
    if future.done() and not future.cancelled():
        future.exception()


def shared(cache: dict[K, asyncio.Future[T]], key: K, make: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
    """The future for `key`: the one in `cache`, or `make()` started now and kept there.
    Await it through `asyncio.shield`, so one asker's cancellation leaves the others' answer."""
    future = cache.get(key)
    if future is None:
        future = cache[key] = asyncio.ensure_future(make())
        future.add_done_callback(retrieve)
    return future
