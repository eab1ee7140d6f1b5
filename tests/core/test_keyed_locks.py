"""``KeyedLocks``: one holder per key at a time, in arrival order, other keys free, and no
memory of a key once nobody holds or waits for it (after errors and cancellations too)."""

from __future__ import annotations

import asyncio

import pytest

from staterelay.core.keyed_locks import KeyedLocks


async def test_one_key_takes_turns_in_arrival_order_while_other_keys_run() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    events: list[str] = []
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        async with locks.hold(key):
            events.append(f"{name} in")
            if name == "a1":
                await release.wait()
            events.append(f"{name} out")

    tasks = [asyncio.create_task(hold("a", f"a{n}")) for n in (1, 2, 3)]
    other = asyncio.create_task(hold("b", "b1"))
    await other  # not held back by a1, which still holds "a"
    assert events == ["a1 in", "b1 in", "b1 out"]
    assert len(locks) == 1
    release.set()
    await asyncio.gather(*tasks)
    assert events[3:] == ["a1 out", "a2 in", "a2 out", "a3 in", "a3 out"]
    assert len(locks) == 0


async def test_a_key_is_forgotten_after_an_error_and_after_a_cancelled_waiter() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("k"):
            raise RuntimeError("the work failed")
    assert len(locks) == 0

    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            entered.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("k"):
            pytest.fail("a cancelled waiter never gets its turn")

    first = asyncio.create_task(holder())
    await entered.wait()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert len(locks) == 0
    async with locks.hold("k"):  # free again
        assert len(locks) == 1
