"""What the metrics endpoint reads from a store: outbox depth and age, and connection use."""

from __future__ import annotations

import asyncio
import time

import pytest

from staterelay.core.records import DeliveryOutcome, NewOutboxEvent
from staterelay.store import Store
from tests.store.outbox_rows import record_on_disk
from tests.store.planning import PLAN
from tests.store.test_contract import hook, tenant_with_user


async def test_outbox_stats_age_is_the_oldest_pending_row(store: Store) -> None:
    """The oldest pending row sets the age; delivered and dead rows count for neither."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(a.id, "whk"))
    empty = await store.outbox_stats()
    assert (empty.pending, empty.dead, empty.oldest_pending_at) == (0, 0, None)
    before = time.time()
    events = [
        NewOutboxEvent(event_type="webhook.test", device_id=f"dev_{n}", payload={})
        for n in range(3)
    ]
    await store.enqueue_events(a.id, events[:1], time.time(), plan=PLAN)
    await asyncio.sleep(0.02)
    await store.enqueue_events(a.id, events[1:], time.time(), plan=PLAN)
    stats = await store.outbox_stats()
    assert stats.pending == 3
    assert stats.oldest_pending_at is not None
    assert before - 1 <= stats.oldest_pending_at <= time.time() + 1
    claimed = sorted(
        (await store.claim_outbox("w", time.time() + 1, 30, 10)).items, key=lambda r: r.id
    )
    assert len(claimed) == 3
    oldest, *later = claimed
    assert stats.oldest_pending_at == pytest.approx(oldest.created_at)
    now = time.time()
    await record_on_disk(
        store,
        [
            DeliveryOutcome(
                oldest,
                delivered=True,
                dead=False,
                next_attempt_at=None,
                status_code=200,
                error=None,
                duration_ms=1.0,
                activity=None,
            ),
            DeliveryOutcome(
                later[0],
                delivered=False,
                dead=True,
                next_attempt_at=None,
                status_code=410,
                error="gone",
                duration_ms=1.0,
                activity=None,
            ),
        ],
        now,
        owner="w",
    )
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (1, 1)
    assert stats.oldest_pending_at == pytest.approx(later[1].created_at)


async def test_pool_stats_describe_open_connections(store: Store) -> None:
    """An open store has connections, none beyond its limit, and no more busy than open."""
    stats = store.pool_stats()
    assert 1 <= stats.size <= stats.max_size
    assert 0 <= stats.in_use <= stats.size
    assert stats.waiting is None or stats.waiting >= 0
    a, _ = await tenant_with_user(store, "a")
    # Writes in flight: the counts stay within bounds while the engine works.
    writes = [store.create_webhook(hook(a.id, f"whk{n}")) for n in range(5)]
    seen = store.pool_stats()
    await asyncio.gather(*writes)
    after = store.pool_stats()
    for sample in (seen, after):
        assert 0 <= sample.in_use <= sample.size <= sample.max_size
    assert after.waiting in (None, 0)
