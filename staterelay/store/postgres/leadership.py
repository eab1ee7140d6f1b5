"""PostgreSQL leadership: a session advisory lock held on a connection of its own.

The lock lives as long as the connection: a process that dies, or loses the database,
loses the lead, and the server frees the lock for the next process that asks. The holder
checks its connection every few seconds, so it learns of the loss itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Final

import asyncpg

from staterelay.core.storage.leadership import Lead
from staterelay.store.postgres.engine import PostgresEngine

_LOGGER = logging.getLogger(__name__)

CHECK_SECONDS: Final = 2.0
"""How often a leader checks that its lock connection still answers."""
CHECK_TIMEOUT: Final = 5.0
CONNECT_TIMEOUT: Final = 10.0


def lock_key(name: str) -> int:
    """The advisory lock id of a job: 64 bits of a hash of its name, signed."""
    digest = hashlib.sha256(f"staterelay.leadership:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _AdvisoryLead:
    """A lead held by a session advisory lock on ``conn``."""

    def __init__(self, conn: asyncpg.Connection, key: int, check_seconds: float) -> None:
        self._conn = conn
        self._key = key
        self._check_seconds = check_seconds
        self._gone = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self._gone.set())

    async def lost(self) -> None:
        """Return once the lock connection stops answering (the server freed the lock)."""
        while not self._gone.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), self._check_seconds)
            if self._gone.is_set():
                break
            try:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), CHECK_TIMEOUT)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                _LOGGER.warning("the leadership connection broke: the lead is lost")
                self._gone.set()
        self._conn.terminate()

    async def release(self) -> None:
        """Unlock and close the connection (closing alone frees the lock too)."""
        self._gone.set()
        try:
            if not self._conn.is_closed():
                await asyncio.wait_for(
                    self._conn.execute("SELECT pg_advisory_unlock($1)", self._key), CHECK_TIMEOUT
                )
                await asyncio.wait_for(self._conn.close(), CHECK_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._conn.terminate()


class PostgresLeadership:
    """``LeadershipStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine
    leadership_check_seconds: float = CHECK_SECONDS

    async def try_lead(self, name: str) -> Lead | None:
        """Take the job's advisory lock on a new connection; None when another session holds it."""
        key = lock_key(name)
        conn = await asyncpg.connect(self.engine.url, timeout=CONNECT_TIMEOUT)
        try:
            taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        except BaseException:
            conn.terminate()
            raise
        if not taken:
            await conn.close()
            return None
        return _AdvisoryLead(conn, key, self.leadership_check_seconds)
