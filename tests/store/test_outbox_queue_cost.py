"""Queueing a row behind its key's pending rows costs the same however many wait there.

A webhook receiver that is down holds every row of its keys; a household's changes must not
grow slower for each row piled up meanwhile. Counted, not timed: SQLite's virtual-machine
steps for the insert, and the tuples PostgreSQL fetched from the outbox for it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import asyncpg

from staterelay.store.postgres.store import PostgresStore
from staterelay.store.sqlite import outbox as sqlite_outbox
from staterelay.store.sqlite.store import SQLiteStore
from tests.postgres_support import migrated_database
from tests.store.test_contract import NOW, tenant_with_user

KEY = "webhook:whk:dev_1"
FETCHED = (
    "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)"
    " FROM pg_stat_xact_user_tables WHERE relname = 'outbox'"
)


def _queue(conn: sqlite3.Connection, at: float) -> None:
    sqlite_outbox.insert_outbox_row(
        conn, "ten_a", "webhook", "whk", "device.state_changed", "dev_1", {}, at, ordering_key=KEY
    )


def _steps_to_queue_one(conn: sqlite3.Connection, at: float) -> int:
    """Virtual-machine steps SQLite ran to queue one row (counted every step)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        _queue(conn, at)
    finally:
        conn.set_progress_handler(None, 1)
    return steps


async def test_sqlite_queues_behind_many_rows_in_as_many_steps_as_behind_few(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "queue.db")
    await store.open()
    try:
        await tenant_with_user(store, "a")

        def pile(count: int) -> Callable[[sqlite3.Connection], int]:
            def write(conn: sqlite3.Connection) -> int:
                for n in range(count):
                    _queue(conn, NOW + n)
                return _steps_to_queue_one(conn, NOW)

            return write

        behind_few = await store.engine.write(pile(5))
        behind_many = await store.engine.write(pile(2000))
        due = await store.engine.read(
            lambda conn: conn.execute(
                "SELECT next_attempt_at FROM outbox WHERE ordering_key = ? ORDER BY id", (KEY,)
            ).fetchall()
        )
    finally:
        await store.close()
    assert behind_many <= behind_few + 5, (behind_few, behind_many)
    # Still never due before a row ahead of it: each measured row waited for the last.
    times = [row[0] for row in due]
    assert times == sorted(times)
    assert times[5] == NOW + 4  # the row measured behind the first five
    assert times[-1] == NOW + 1999


async def test_postgres_queues_behind_many_rows_fetching_one() -> None:
    async with migrated_database() as database:
        store = PostgresStore(database.app_url)
        await store.open()
        try:
            tenant, _ = await tenant_with_user(store, "a")
        finally:
            await store.close()
        conn = await asyncpg.connect(database.app_url)
        try:

            def rows(count: int, start: float) -> str:
                return json.dumps(
                    [
                        {
                            "sink": "webhook",
                            "destination": "whk",
                            "ordering_key": KEY,
                            "event_type": "device.state_changed",
                            "device_id": "dev_1",
                            "payload": {},
                            "mergeable": False,
                            "merge": None,
                            "due_at": start + n,
                        }
                        for n in range(count)
                    ]
                )

            async def fetched_to_queue_one(behind: int) -> int:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
                    await conn.execute(
                        "SELECT sr_queue_rows($1, $2::jsonb, $3)", tenant.id, rows(behind, NOW), NOW
                    )
                async with conn.transaction():
                    # Statistics wait in the backend until flushed (at most once a second):
                    # what this call fetched is the difference within one transaction.
                    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
                    before = await conn.fetchval(FETCHED)
                    await conn.execute(
                        "SELECT sr_queue_rows($1, $2::jsonb, $3)", tenant.id, rows(1, NOW), NOW
                    )
                    fetched: int = await conn.fetchval(FETCHED) - before
                return fetched

            behind_few = await fetched_to_queue_one(5)
            behind_many = await fetched_to_queue_one(2000)
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
                due = [
                    row["next_attempt_at"]
                    for row in await conn.fetch(
                        "SELECT next_attempt_at FROM outbox WHERE ordering_key = $1 ORDER BY id",
                        KEY,
                    )
                ]
        finally:
            await conn.close()
    assert behind_many <= behind_few + 2, (behind_few, behind_many)
    assert behind_few <= 3
    # Still never due before a row ahead of it: each measured row waited for the last.
    assert due == sorted(due)
    assert due[5] == NOW + 4  # the row measured behind the first five
    assert due[-1] == NOW + 1999
