"""The restart bound: at most N restart jobs at once, and canaries before followers.

A plain semaphore serves waiters in arrival order, so once the first images are proven their
followers queue ahead of the canaries of images pulled later; those canaries then restart near
the end of the run and their followers after them, a canary restart and a settle time longer
than they need be (issue 13's sweep c).  Here waiters go by rank: a rollback first (it puts a
service back), then canaries (other units wait for them), then every other update; waiters of
one rank keep their arrival order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum


class Rank(IntEnum):
    """Who goes first under the bound: lower first."""

    ROLLBACK = 0
    CANARY = 1
    UPDATE = 2


class RestartBound:
    def __init__(self, limit: int) -> None:
        self._free = max(1, limit)
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def slot(self, rank: Rank = Rank.UPDATE) -> AsyncIterator[None]:
        """Hold one of the bound's slots for the body; lower ranks are served first."""
        await self._acquire(rank)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, rank: Rank) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(rank), next(self._order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot was handed over as the waiter was cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # a cancelled waiter's turn is done: skip it
                turn.set_result(None)
                return
        self._free += 1
