"""The in-process request counter: fixed windows per (scope, subject), bounded in memory."""

from __future__ import annotations

from staterelay.core.ratelimit import MemoryRateLimiter


class Now:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


async def test_the_limit_holds_until_the_window_ends() -> None:
    """``limit`` requests pass; the next waits for the rest of the window, then all is new."""
    now = Now()
    limiter = MemoryRateLimiter(now=now)
    assert [await limiter.hit("ip", "a", 3, 60.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    now.value += 20
    assert await limiter.hit("ip", "a", 3, 60.0) == 40.0
    assert await limiter.hit("ip", "b", 3, 60.0) == 0.0  # another subject counts apart
    assert await limiter.hit("key", "a", 3, 60.0) == 0.0  # and another scope
    now.value += 40
    assert await limiter.hit("ip", "a", 3, 60.0) == 0.0


async def test_refused_requests_count_too() -> None:
    """Hammering while refused does not open a new window early."""
    now = Now()
    limiter = MemoryRateLimiter(now=now)
    for _ in range(10):
        await limiter.hit("ip", "a", 1, 60.0)
        now.value += 5
    assert await limiter.hit("ip", "a", 1, 60.0) == 10.0


async def test_memory_is_bounded() -> None:
    """Past capacity the least recently seen subjects are forgotten."""
    limiter = MemoryRateLimiter(now=Now(), capacity=10)
    for n in range(20):
        await limiter.hit("ip", f"s{n}", 1, 60.0)
    assert await limiter.hit("ip", "s0", 1, 60.0) == 0.0  # forgotten: a fresh window
    assert await limiter.hit("ip", "s19", 1, 60.0) == 60.0
