"""SQLite's writer answers a batch before it runs the next one's statements."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from staterelay.store.sqlite.store import SQLiteStore


async def test_a_batchs_answers_go_out_before_the_next_batch_runs(tmp_path: Path) -> None:
    """B is queued while A commits. A's caller resumes before B's statements hold the loop
    (they run on the event loop), so A's answer does not wait behind B's batch."""
    store = SQLiteStore(tmp_path / "batches.db")
    await store.open()
    order: list[str] = []
    second: asyncio.Future[str] | None = None

    def write_b(conn: sqlite3.Connection) -> str:
        order.append("B runs")
        conn.execute("INSERT INTO instance_meta (key, value) VALUES ('b', '2')")
        return "b"

    def write_a(conn: sqlite3.Connection) -> str:
        nonlocal second
        order.append("A runs")
        conn.execute("INSERT INTO instance_meta (key, value) VALUES ('a', '1')")
        second = store.engine.submit(write_b)  # queued while A's batch is open
        return "a"

    try:
        assert await store.engine.write(write_a) == "a"
        order.append("A answered")
        assert second is not None
        assert await second == "b"
    finally:
        await store.close()
    assert order == ["A runs", "A answered", "B runs"]
