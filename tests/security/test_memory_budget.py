"""The server-wide memory budget for large messages (mailstead.security.memory)."""

from __future__ import annotations

import asyncio

import pytest

from mailstead.security.memory import MemoryBudget

MIB = 1 << 20


def test_small_messages_are_not_counted():
    async def body() -> None:
        budget = MemoryBudget(2 * MIB)
        assert await budget.acquire(MIB - 1, 0.0) == 0
        assert budget.in_use == 0

    asyncio.run(body())


def test_waiters_go_in_order_when_room_is_freed():
    async def body() -> None:
        budget = MemoryBudget(10 * MIB)
        first = await budget.acquire(6 * MIB, 1.0)
        assert first == 6 * MIB
        order: list[str] = []

        async def take(name: str, size: int) -> int | None:
            charge = await budget.acquire(size, 60.0)
            order.append(name)
            return charge

        second = asyncio.create_task(take("second", 6 * MIB))
        third = asyncio.create_task(take("third", 2 * MIB))  # fits, but waits its turn
        await asyncio.sleep(0)
        assert order == [] and budget.in_use == 6 * MIB
        budget.release(first)
        assert await second == 6 * MIB and await third == 2 * MIB
        assert order == ["second", "third"] and budget.in_use == 8 * MIB

    asyncio.run(body())


def test_a_message_larger_than_the_budget_goes_alone():
    async def body() -> None:
        budget = MemoryBudget(4 * MIB)
        charge = await budget.acquire(50 * MIB, 0.0)
        assert charge == 4 * MIB
        assert await budget.acquire(2 * MIB, 0.0) is None  # full: times out at once
        budget.release(charge)
        assert budget.in_use == 0
        assert await budget.acquire(2 * MIB, 0.0) == 2 * MIB

    asyncio.run(body())


def test_a_timed_out_or_cancelled_waiter_takes_nothing():
    async def body() -> None:
        budget = MemoryBudget(4 * MIB)
        held = await budget.acquire(4 * MIB, 0.0)
        assert await budget.acquire(2 * MIB, 0.0) is None
        waiter = asyncio.create_task(budget.acquire(2 * MIB, 60.0))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert held is not None
        budget.release(held)
        assert budget.in_use == 0

    asyncio.run(body())
