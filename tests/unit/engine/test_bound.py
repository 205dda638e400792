"""The restart bound (engine/bound.py): N at once, urgent waiters first, cancellation safe."""

from __future__ import annotations

import asyncio

from autoupdated.engine.bound import Rank, RestartBound


async def test_at_most_the_limit_hold_a_slot_and_waiters_go_by_rank_then_arrival() -> None:
    bound = RestartBound(2)
    order: list[str] = []
    holding = 0
    most = 0
    gate = asyncio.Event()

    async def job(name: str, rank: Rank) -> None:
        nonlocal holding, most
        async with bound.slot(rank):
            holding += 1
            most = max(most, holding)
            order.append(name)
            await gate.wait()
            holding -= 1

    first = [asyncio.create_task(job(n, Rank.UPDATE)) for n in ("a", "b")]
    await asyncio.sleep(0)
    waiters = [
        ("u1", Rank.UPDATE),
        ("c1", Rank.CANARY),
        ("u2", Rank.UPDATE),
        ("c2", Rank.CANARY),
        ("r1", Rank.ROLLBACK),
    ]
    queued = [asyncio.create_task(job(n, rank)) for n, rank in waiters]
    await asyncio.sleep(0)
    assert order == ["a", "b"], "two slots, both taken"
    gate.set()
    await asyncio.gather(*first, *queued)
    assert order == ["a", "b", "r1", "c1", "c2", "u1", "u2"]
    assert most == 2


async def test_a_cancelled_waiter_gives_up_its_place_and_loses_no_slot() -> None:
    bound = RestartBound(1)
    release = asyncio.Event()
    got: list[str] = []

    async def hold() -> None:
        async with bound.slot():
            await release.wait()

    async def want(name: str) -> None:
        async with bound.slot():
            got.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(want("cancelled"))
    after = asyncio.create_task(want("after"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, after, cancelled, return_exceptions=True)
    assert got == ["after"]
    await asyncio.wait_for(want("again"), 0.1)  # the slot came back: nothing leaked
    assert got == ["after", "again"]


async def test_a_waiter_cancelled_as_its_turn_came_passes_the_slot_on() -> None:
    bound = RestartBound(1)
    got: list[str] = []

    async def want(name: str) -> None:
        async with bound.slot():
            got.append(name)

    async with bound.slot():
        unlucky = asyncio.create_task(want("unlucky"))
        nxt = asyncio.create_task(want("next"))
        await asyncio.sleep(0)
    # the slot is handed to `unlucky` on release; it is cancelled before it runs
    unlucky.cancel()
    await asyncio.gather(unlucky, nxt, return_exceptions=True)
    assert got == ["next"]
    await asyncio.wait_for(want("again"), 0.1)
