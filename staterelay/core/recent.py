"""A short-lived, bounded memory of credentials resolved moments ago, keyed by token digest.

A busy script or Alexa sends the same token many times a second; answering a repeat from
memory spares a database read each time. Forgetting bumps a generation number: a lookup
that began before a revocation passes the generation it saw to ``put``, which then keeps
nothing, so a revoked credential is never remembered by a read that raced the revocation.
Revocations made by another process (the CLI, another replica) take effect within ``ttl``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class RecentCache(Generic[V]):
    """Values remembered for ``ttl`` seconds, at most ``capacity`` of them (oldest go first)."""

    def __init__(
        self,
        ttl: float,
        capacity: int = 4096,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()
        self.generation = 0

    def get(self, key: str) -> V | None:
        """The value remembered for ``key``, or None when there is none or it is too old."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._monotonic() >= entry[1]:
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: str, value: V, generation: int) -> None:
        """Remember ``value``, unless something was forgotten since ``generation`` was read."""
        if generation != self.generation:
            return
        self._entries[key] = (value, self._monotonic() + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget_where(self, predicate: Callable[[V], bool]) -> None:
        """Forget every value ``predicate`` picks (and any lookup still in flight)."""
        self.generation += 1
        for key, (value, _) in list(self._entries.items()):
            if predicate(value):
                del self._entries[key]

    def clear(self) -> None:
        """Forget everything (and any lookup still in flight)."""
        self.generation += 1
        self._entries.clear()
