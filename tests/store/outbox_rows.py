"""Reading every outbox row of a store, for contract tests (claims only hand out heads)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from staterelay.core.records import DeliveryOutcome
from staterelay.store import Store
from staterelay.store.postgres.store import PostgresStore
from staterelay.store.sqlite.store import SQLiteStore

_COLUMNS = (
    "id, sink, destination, ordering_key, event_id, event_type, device_id, payload, status,"
    " attempts, next_attempt_at, merged_into, mergeable"
)


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row as stored."""

    id: int
    sink: str
    destination: str
    ordering_key: str
    event_id: str
    event_type: str
    device_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: float
    merged_into: str | None
    mergeable: bool


async def outbox_rows(store: Store, *, pending_only: bool = True) -> list[OutboxRow]:
    """Every (pending) outbox row of every tenant, oldest first, read past row-level security
    (as the database superuser on PostgreSQL)."""
    where = " WHERE status = 'pending'" if pending_only else ""
    sql = f"SELECT {_COLUMNS} FROM outbox{where} ORDER BY id"
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.engine.path) as conn:
            rows: list[Any] = conn.execute(sql).fetchall()
        return [_row(row, json.loads(row[7])) for row in rows]
    assert isinstance(store, PostgresStore)
    parts = urlsplit(store.engine.url)
    admin = urlunsplit(parts._replace(netloc=f"postgres@{parts.hostname}:{parts.port}"))
    conn = await asyncpg.connect(admin)
    try:
        records = await conn.fetch(sql)
    finally:
        await conn.close()
    return [_row(tuple(record), json.loads(record["payload"])) for record in records]


def _row(row: Any, payload: dict[str, Any]) -> OutboxRow:
    return OutboxRow(
        id=int(row[0]),
        sink=row[1],
        destination=row[2],
        ordering_key=row[3],
        event_id=row[4],
        event_type=row[5],
        device_id=row[6],
        payload=payload,
        status=row[8],
        attempts=int(row[9]),
        next_attempt_at=float(row[10]),
        merged_into=row[11],
        mergeable=bool(row[12]),
    )


async def record_on_disk(
    store: Store, outcomes: Sequence[DeliveryOutcome], now: float, *, owner: str
) -> set[int]:
    """``record_deliveries``, then see every result it recorded on disk (SQLite writes a
    sent row's result with the next commit, or within a second); returns its answer."""
    written: set[int] = set()
    more = asyncio.Event()

    def on_written(ids: set[int]) -> None:
        written.update(ids)
        more.set()

    recorded = await store.record_deliveries(outcomes, now, owner=owner, on_written=on_written)
    if isinstance(store, SQLiteStore) and not recorded <= written:
        # Any write of the file takes the waiting results along: no need to wait a second.
        await store.engine.write(lambda conn: None)
    async with asyncio.timeout(10):
        while not recorded <= written:
            more.clear()
            await more.wait()
    return recorded
