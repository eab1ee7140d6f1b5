"""SQLite's writer takes the write lock on the loop when it is free, and waits when it is not."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.core.records import DeviceChange
from staterelay.store import open_store
from staterelay.store.sqlite.engine import BUSY_TIMEOUT_MS, _try_begin, connect
from staterelay.store.sqlite.store import SQLiteStore
from tests.store.planning import PLAN
from tests.store.test_contract import NOW, created, switch, tenant_with_user


def test_try_begin_never_waits_and_keeps_the_busy_timeout(tmp_path: Path) -> None:
    """A held lock is refused at once; a free one is taken; the busy timeout is restored."""
    path = tmp_path / "lock.db"
    with (
        contextlib.closing(connect(path, synchronous="FULL")) as ours,
        contextlib.closing(connect(path, synchronous="FULL")) as other,
    ):
        ours.execute("CREATE TABLE t (x)")
        other.execute("BEGIN IMMEDIATE")
        assert _try_begin(ours) is False
        assert not ours.in_transaction
        assert ours.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
        other.execute("COMMIT")
        assert _try_begin(ours) is True
        assert ours.in_transaction
        assert ours.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
        ours.execute("ROLLBACK")


@pytest.fixture
async def lamp_store(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, str]]:
    """An opened store at ``tmp_path / "store.db"`` and a tenant with one switch, ``dev_a``."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        tenant, _ = await tenant_with_user(store, "a")
        device = switch(tenant.id, "dev_a", "Lamp")
        await store.create_device(device, created(device), (), plan=PLAN)
        yield store, tenant.id
    finally:
        await store.close()


async def test_write_waits_for_another_process_holding_the_lock(
    lamp_store: tuple[SQLiteStore, str], tmp_path: Path
) -> None:
    """A change queued while another connection writes commits once that one is done."""
    store, tenant_id = lamp_store
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        change = asyncio.ensure_future(
            store.change_device(
                tenant_id,
                "dev_a",
                lambda d: DeviceChange(properties={"power": "ON"}),
                NOW + 5,
                plan=PLAN,
            )
        )
        await asyncio.sleep(0.1)
        assert not change.done()  # waiting for the lock, off the loop
        other.execute("COMMIT")
        committed = await asyncio.wait_for(change, 5)
    assert committed.after.properties["power"].value == "ON"
    stored = await store.get_device(tenant_id, "dev_a")
    assert stored is not None
    assert stored.version == committed.after.version


async def test_cancelled_caller_does_not_take_its_write_back(
    lamp_store: tuple[SQLiteStore, str],
) -> None:
    """A caller cancelled while its write waits (a client that hung up) still gets it
    committed, and the writer goes on answering the writes queued with it."""
    store, tenant_id = lamp_store
    on = asyncio.create_task(
        store.change_device(
            tenant_id,
            "dev_a",
            lambda d: DeviceChange(properties={"power": "ON"}),
            NOW + 1,
            plan=PLAN,
        )
    )
    await asyncio.sleep(0)  # queued, not yet committed
    on.cancel()
    renamed = await store.change_device(
        tenant_id, "dev_a", lambda d: DeviceChange(name="Hall lamp"), NOW + 2, plan=PLAN
    )
    with contextlib.suppress(asyncio.CancelledError):
        await on
    assert on.cancelled()
    assert renamed.before.properties["power"].value == "ON"
    stored = await store.get_device(tenant_id, "dev_a")
    assert stored is not None
    assert stored.version == 3
    assert stored.name == "Hall lamp"
    assert stored.properties["power"].value == "ON"
