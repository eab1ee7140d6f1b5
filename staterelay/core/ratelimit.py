"""Request rate limits: fixed-window counters per (scope, subject), in process or shared.

A window opens with a subject's first request and lasts ``window`` seconds; every request
in it counts, refused ones included, and once the count passes the limit the subject waits
for the window to end. ``RateLimiter`` is what the web middleware uses; ``MemoryRateLimiter``
counts inside one process, and ``staterelay.replicas`` has the Redis one replicas share.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

CAPACITY: Final = 100_000  # subjects remembered at once; the least recently seen go first


class RateLimiter(Protocol):
    """Counts requests and says how long a subject over its limit must wait."""

    async def hit(self, scope: str, subject: str, limit: int, window: float) -> float:
        """Count one request; seconds until the subject may send again, 0.0 when allowed."""
        ...

    async def close(self) -> None:
        """Release whatever the limiter holds."""
        ...


class MemoryRateLimiter:
    """``RateLimiter`` inside one process, bounded in memory (LRU)."""

    def __init__(
        self, *, now: Callable[[], float] = time.monotonic, capacity: int = CAPACITY
    ) -> None:
        self._now = now
        self._capacity = capacity
        self._windows: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    async def hit(self, scope: str, subject: str, limit: int, window: float) -> float:
        """Count one request in the subject's current window."""
        return self.hit_now(scope, subject, limit, window)

    def hit_now(self, scope: str, subject: str, limit: int, window: float) -> float:
        """``hit`` without awaiting, for callers that fall back to it from async code."""
        now = self._now()
        key = (scope, subject)
        entry = self._windows.get(key)  # [window end, count]
        if entry is None or now >= entry[0]:
            entry = [now + window, 0.0]
            self._windows[key] = entry
        else:
            self._windows.move_to_end(key)
        entry[1] += 1
        while len(self._windows) > self._capacity:
            self._windows.popitem(last=False)
        return 0.0 if entry[1] <= limit else max(entry[0] - now, 0.001)

    async def close(self) -> None:
        """Forget every count."""
        self._windows.clear()
