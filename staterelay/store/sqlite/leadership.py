"""SQLite leadership: one process holds the instance lock, so it always leads."""

from __future__ import annotations

import asyncio

from staterelay.core.storage.leadership import Lead


class _SoleLead:
    """The lead of the only process that uses the database: never lost."""

    def __init__(self) -> None:
        self._released = asyncio.Event()

    async def lost(self) -> None:
        """Wait until released: nothing else can take the lead away."""
        await self._released.wait()

    async def release(self) -> None:
        """Nothing to give up."""
        self._released.set()


class SQLiteLeadership:
    """``LeadershipStore`` on SQLite; mixed into ``SQLiteStore``."""

    async def try_lead(self, name: str) -> Lead | None:
        """Always the lead: the instance lock keeps every other process out."""
        return _SoleLead()
