"""SQLite implementation of the Ifttt part of the store."""

from __future__ import annotations

import sqlite3

from staterelay.store.records import NewOutboxEvent
from staterelay.store.sqlite_engine import SQLiteEngine


class SQLiteIfttt:
    """``IftttStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine


def ifttt_fan_out(
    conn: sqlite3.Connection, tenant_id: str, event: NewOutboxEvent, now: float
) -> int:
    """The outbox rows the Ifttt sink owes for an event (none yet)."""
    return 0
