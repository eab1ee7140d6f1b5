"""Instance-wide facts the setup pages check: when an outside service first reached us.

A fact is written once (the first time) and remembered in memory after that, so the busy
paths that note them (every Alexa directive, IFTTT's status checks) cost a set lookup.
"""

from __future__ import annotations

from typing import Final

from staterelay.core.clock import Clock
from staterelay.core.storage import Store

ALEXA_RELAY_SEEN: Final = "seen:alexa_relay"
ALEXA_CHANGE_REPORT_SEEN: Final = "seen:alexa_change_report"
"""Alexa's gateway accepted a ChangeReport: proactive state reaches Routines."""
IFTTT_STATUS_SEEN: Final = "seen:ifttt_status"


class InstanceFacts:
    """First-seen times and other values kept for the whole instance."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._noted: set[str] = set()

    async def note(self, key: str) -> None:
        """Record that ``key`` happened now, unless it was recorded before."""
        if key in self._noted:
            return
        if await self._store.instance_fact(key) is None:
            await self._store.set_instance_fact(key, repr(self._clock()))
        self._noted.add(key)

    async def first_seen(self, key: str) -> float | None:
        """When ``key`` first happened; None when it never did."""
        value = await self._store.instance_fact(key)
        try:
            return None if value is None else float(value)
        except ValueError:
            return None

    async def get(self, key: str) -> str | None:
        """A stored value."""
        return await self._store.instance_fact(key)

    async def put(self, key: str, value: str | None) -> None:
        """Store a value (None forgets it)."""
        await self._store.set_instance_fact(key, value)
