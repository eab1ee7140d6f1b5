"""The Redis bus between two processes' buses: relaying, skipping its own events, and
working alone while Redis is down (at start or later), then relaying again once it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from staterelay.core.events import OutboxEnqueued, StateChanged
from staterelay.replicas.bus import RedisBus
from staterelay.replicas.link import RedisLink
from tests.core.test_event_codec import EVENTS
from tests.redis_support import RedisServerProcess, unique_prefix


class Replica:
    """One process's link and bus, with what its subscribers received."""

    def __init__(self, url: str, prefix: str) -> None:
        self.link = RedisLink(url, key_prefix=prefix)
        self.bus = RedisBus(self.link)
        self.seen: list[object] = []
        for kind in {type(event) for event in EVENTS}:
            self.bus.subscribe(kind, self.seen.append)

    async def close(self) -> None:
        await self.bus.close()
        await self.link.close()


@pytest.fixture
async def pair(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two started replicas on the shared Redis."""
    a, b = Replica(redis_url, key_prefix), Replica(redis_url, key_prefix)
    await a.bus.start()
    await b.bus.start()
    yield a, b
    await a.close()
    await b.close()


async def wait_for(condition: object, timeout: float) -> float:
    """Seconds until ``condition()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_events_reach_the_other_replica_and_are_not_echoed(
    pair: tuple[Replica, Replica],
) -> None:
    """Every relayed event arrives equal on the other side; the sender hears each once."""
    a, b = pair
    for event in EVENTS:
        a.bus.publish(event)
    assert a.seen == EVENTS  # at once, locally
    await wait_for(lambda: len(b.seen) == len(EVENTS), timeout=1.0)
    assert b.seen == EVENTS
    await asyncio.sleep(0.2)
    assert a.seen == EVENTS
    assert (a.bus.received, b.bus.received) == (0, len(EVENTS))


async def test_another_prefix_hears_nothing(redis_url: str, key_prefix: str) -> None:
    """Two instances sharing one Redis stay apart by their key prefix."""
    a, other = Replica(redis_url, key_prefix), Replica(redis_url, unique_prefix())
    try:
        await a.bus.start()
        await other.bus.start()
        a.bus.publish(OutboxEnqueued(rows=1))
        await asyncio.sleep(0.3)
        assert other.seen == []
    finally:
        await a.close()
        await other.close()


async def test_redis_down_at_start_then_back(caplog: pytest.LogCaptureFixture) -> None:
    """Start without Redis: local delivery goes on and publishing never blocks; once Redis
    starts on its port, events reach the other replica within a few seconds."""
    caplog.set_level(logging.INFO, logger="staterelay.replicas")
    server = RedisServerProcess()  # not started yet: its port refuses connections
    prefix = unique_prefix()
    a, b = Replica(server.url, prefix), Replica(server.url, prefix)
    try:
        started = time.monotonic()
        await a.bus.start()
        await b.bus.start()
        assert time.monotonic() - started < 5.0
        publish_started = time.monotonic()
        for _ in range(5000):  # far more than the outgoing queue holds
            a.bus.publish(OutboxEnqueued(rows=1))
        assert time.monotonic() - publish_started < 1.0
        assert len(a.seen) == 5000
        await server.start()
        a.seen.clear()

        async def relayed() -> bool:
            a.bus.publish(OutboxEnqueued(rows=2))
            await asyncio.sleep(0.1)
            return OutboxEnqueued(rows=2) in b.seen

        deadline = time.monotonic() + 8.0
        while not await relayed():
            assert time.monotonic() < deadline, "relaying did not resume"
        messages = [r.getMessage() for r in caplog.records]
        assert any("unreachable" in m for m in messages)
        assert any("dropped" in m for m in messages)
    finally:
        await a.close()
        await b.close()
        server.ensure_stopped()


async def test_redis_lost_and_recovered_is_logged_once_each(
    own_redis: RedisServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Killing Redis: one warning per replica, events still local; restarting it on the same
    port: one recovery line per replica, and relaying works again."""
    caplog.set_level(logging.INFO, logger="staterelay.replicas")
    prefix = unique_prefix()
    a, b = Replica(own_redis.url, prefix), Replica(own_redis.url, prefix)
    change = EVENTS[0]
    assert isinstance(change, StateChanged)
    try:
        await a.bus.start()
        await b.bus.start()
        a.bus.publish(change)
        await wait_for(lambda: b.seen == [change], timeout=1.0)
        own_redis.kill()
        await wait_for(lambda: a.link.down and b.link.down, timeout=3.0)
        for _ in range(20):
            a.bus.publish(change)
            await asyncio.sleep(0.05)
        assert len(a.seen) == 21
        await own_redis.start()
        b.seen.clear()

        async def relayed() -> bool:
            a.bus.publish(OutboxEnqueued(rows=9))
            await asyncio.sleep(0.1)
            return OutboxEnqueued(rows=9) in b.seen

        deadline = time.monotonic() + 8.0
        while not await relayed():
            assert time.monotonic() < deadline, "relaying did not resume"
        messages = [r.getMessage() for r in caplog.records if r.name == "staterelay.replicas.link"]
        assert sum(" is unreachable (" in m for m in messages) == 2, messages
        assert sum(" answers again: " in m for m in messages) == 2, messages
    finally:
        await a.close()
        await b.close()


async def test_a_failure_elsewhere_heals_through_the_subscription(
    pair: tuple[Replica, Replica],
) -> None:
    """A command that timed out marks Redis down for everyone; the standing subscription
    pings, hears the pong, and relaying resumes without a reconnect."""
    a, b = pair
    a.link.failed(TimeoutError("a slow command"))  # as a rate-limit call that timed out would
    assert a.link.down
    a.bus.publish(OutboxEnqueued(rows=5))  # dropped: Redis counts as down
    await wait_for(lambda: not a.link.down, timeout=3.0)
    a.bus.publish(OutboxEnqueued(rows=6))
    await wait_for(lambda: OutboxEnqueued(rows=6) in b.seen, timeout=1.0)
    assert OutboxEnqueued(rows=5) not in b.seen
