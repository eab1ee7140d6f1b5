"""SQLite writes a sent row's result with the next commit (or within a second), never later.

Claims live in the writer's memory; a row that was sent is done in memory at once (the rows
of its key behind it may go) and its result rides along with the next transaction that
writes the file anyway. These tests pin down what that may and may not change: order,
nothing sent twice while the process lives, results on disk by ``close`` or within
``RECORD_WITHIN``, and a crash in between sending the row again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.core.records import NewOutboxEvent
from staterelay.store.sqlite import outbox as sqlite_outbox
from staterelay.store.sqlite.store import SQLiteStore
from tests.store.outbox_rows import outbox_rows
from tests.store.planning import PLAN
from tests.store.test_contract import hook, outcome_of, tenant_with_user

ROOT = Path(__file__).resolve().parents[2]
EVENT = NewOutboxEvent(event_type="webhook.test", device_id="dev_1", payload={})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A store with one household and one webhook (tenant ``ten_a``, webhook ``whk``)."""
    store = SQLiteStore(tmp_path / "results.db")
    await store.open()
    tenant, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(tenant.id, "whk"))
    try:
        yield store
    finally:
        await store.close()


async def statuses(store: SQLiteStore) -> dict[int, str]:
    """Every outbox row's status as the file holds it (read by another connection)."""
    return {row.id: row.status for row in await outbox_rows(store, pending_only=False)}


async def test_the_next_row_of_the_key_goes_before_the_result_is_on_disk(
    store: SQLiteStore,
) -> None:
    await store.enqueue_events("ten_a", [EVENT, EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items
    assert await store.record_deliveries([outcome_of(head)], now, owner="w") == {head.id}
    assert (await statuses(store))[head.id] == "pending"  # not written yet
    assert (await store.outbox_stats()).pending == 2  # not finished for good until then
    [second] = (await store.claim_outbox("w", now, 30, 10)).items
    assert second.id > head.id
    # ...and the sent row itself is never handed out again.
    assert (await store.claim_outbox("w", now + 10_000, 30, 10)).items == [second]


async def test_the_result_rides_along_with_the_next_change(store: SQLiteStore) -> None:
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items
    written: list[set[int]] = []
    await store.record_deliveries([outcome_of(head)], now, owner="w", on_written=written.append)
    assert written == []
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)  # writes the file
    assert (await statuses(store))[head.id] == "delivered"
    await asyncio.sleep(0)  # the callback runs once the commit's future is answered
    assert written == [{head.id}]
    history = await store.list_webhook_deliveries("ten_a", "whk", before_id=None, limit=5)
    assert [entry.event_id for entry in history] == [head.event_id]


async def test_without_other_writes_the_result_is_written_within_a_second(
    store: SQLiteStore,
) -> None:
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items
    written = asyncio.Event()
    await store.record_deliveries(
        [outcome_of(head)], now, owner="w", on_written=lambda ids: written.set()
    )
    await asyncio.wait_for(written.wait(), sqlite_outbox.RECORD_WITHIN + 5)
    assert (await statuses(store))[head.id] == "delivered"


async def test_retries_and_dead_rows_are_written_before_the_answer(store: SQLiteStore) -> None:
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items
    await store.record_deliveries([outcome_of(head, retry_at=now + 60)], now, owner="w")
    [row] = await outbox_rows(store)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, now + 60)


async def test_closing_writes_the_waiting_results(tmp_path: Path, store: SQLiteStore) -> None:
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items
    await store.record_deliveries([outcome_of(head)], now, owner="w")
    await store.close()
    reopened = SQLiteStore(store.engine.path)
    await reopened.open()
    try:
        assert (await statuses(reopened))[head.id] == "delivered"
        assert (await reopened.claim_outbox("w", now + 100, 30, 10)).items == []
    finally:
        await reopened.close()
    await store.open()  # for the fixture's close


async def test_releasing_leases_keeps_sent_rows_from_being_sent_again(
    store: SQLiteStore,
) -> None:
    """Shutting the deliverer down frees its leases, never those of rows it has sent."""
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items
    await store.record_deliveries([outcome_of(head)], now, owner="w")
    assert await store.release_leases("w") == 0
    assert await store.release_leases(None) == 0
    assert (await store.claim_outbox("w2", now + 100, 30, 10)).items == []


async def test_a_result_the_disk_refuses_sends_the_row_again(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    now = time.time()
    [head] = (await store.claim_outbox("w", now, 30, 10)).items

    def refused(*args: object) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(sqlite_outbox, "_write_outcome", refused)
    await store.record_deliveries([outcome_of(head)], now, owner="w")
    await store.enqueue_events("ten_a", [], time.time(), plan=PLAN)
    await store.engine.write(lambda conn: None)  # the write that carries (and fails) it
    monkeypatch.undo()
    for _ in range(100):  # the lease is freed by a write queued from the failure
        again = (await store.claim_outbox("w", now + 100, 30, 10)).items
        if again:
            break
        await asyncio.sleep(0.01)
    assert [row.id for row in again] == [head.id]
    assert (await statuses(store))[head.id] == "pending"


CRASH = """
import asyncio, os, sys, time
from pathlib import Path
from staterelay.store.sqlite.store import SQLiteStore
from tests.store.test_contract import outcome_of

async def main():
    store = SQLiteStore(Path(sys.argv[1]))
    await store.open()
    [head] = (await store.claim_outbox("w", time.time(), 30, 10)).items
    await store.record_deliveries([outcome_of(head)], time.time(), owner="w")
    print(head.id, flush=True)
    os._exit(0)  # a crash: nothing else runs

asyncio.run(main())
"""


async def test_a_crash_before_the_result_is_written_sends_the_row_again(
    store: SQLiteStore,
) -> None:
    """At least once: the row a dead process had sent is claimable after the restart."""
    await store.enqueue_events("ten_a", [EVENT], time.time(), plan=PLAN)
    path = store.engine.path
    await store.close()
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    sent = int(done.stdout.strip())
    await store.open()
    [again] = (await store.claim_outbox("w", time.time(), 30, 10)).items
    assert again.id == sent
