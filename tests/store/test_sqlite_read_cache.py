"""SQLite's remembered devices: reads reused while nothing commits, the writer's own memory of
the devices it changed, and neither ever stale after a commit elsewhere or a rollback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from staterelay.core.records import Device, DeviceChange, PropertyState, Tenant
from staterelay.store import open_store
from staterelay.store.sqlite import engine as sqlite_engine
from staterelay.store.sqlite.store import SQLiteStore
from tests.store.planning import PLAN, removal
from tests.store.test_contract import NOW, created, switch, tenant_with_user


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An opened SQLite store."""
    store = open_store(f"sqlite:///{tmp_path / 'cache.db'}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def with_lamp(store: SQLiteStore) -> Tenant:
    """A tenant with one switch, ``dev_a``."""
    tenant, _ = await tenant_with_user(store, "a")
    device = switch(tenant.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)
    return tenant


async def test_unchanged_database_answers_from_memory(sqlite_store: SQLiteStore) -> None:
    """Two reads with no commit between them give the same record without a second query."""
    a = await with_lamp(sqlite_store)
    first = await sqlite_store.get_device(a.id, "dev_a")
    assert await sqlite_store.get_device(a.id, "dev_a") is first
    assert await sqlite_store.get_device(a.id, "dev_missing") is None


async def test_own_commit_is_seen(sqlite_store: SQLiteStore) -> None:
    """A change through the store replaces what was remembered."""
    a = await with_lamp(sqlite_store)
    assert (await sqlite_store.get_device(a.id, "dev_a")) is not None
    committed = await sqlite_store.change_device(
        a.id, "dev_a", lambda d: DeviceChange(properties={"power": "ON"}), NOW + 5, plan=PLAN
    )
    assert await sqlite_store.get_device(a.id, "dev_a") == committed.after


async def test_commit_by_another_connection_is_seen(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """A commit by another process (the CLI, a second connection) is never hidden from a
    read that comes after it: any read in a later pass of the event loop (as every request
    that arrives after the commit is)."""
    a = await with_lamp(sqlite_store)
    before = await sqlite_store.get_device(a.id, "dev_a")
    assert before is not None
    assert before.properties["power"].value == "OFF"
    with contextlib.closing(sqlite3.connect(tmp_path / "cache.db", isolation_level=None)) as other:
        other.execute(
            "UPDATE device_properties SET value = ?, changed_at = ? WHERE device_id = ?",
            (json.dumps("ON"), NOW + 9, "dev_a"),
        )
    await asyncio.sleep(0)  # the next request
    after = await sqlite_store.get_device(a.id, "dev_a")
    assert after is not None
    assert after.properties["power"] == PropertyState("ON", NOW + 9)


async def test_the_data_version_is_read_once_per_pass_of_the_loop(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """Reads served in one pass share one look at the data version; the first read of the
    next pass looks again and sees a commit made meanwhile."""
    a = await with_lamp(sqlite_store)
    reader = sqlite_store.engine._reader
    assert reader is not None
    looks: list[str] = []
    reader.set_trace_callback(
        lambda statement: looks.append(statement) if "data_version" in statement else None
    )
    try:
        await sqlite_store.get_device(a.id, "dev_a")  # remembered
        await asyncio.sleep(0)
        looks.clear()
        first = await asyncio.gather(*(sqlite_store.get_device(a.id, "dev_a") for _ in range(20)))
        assert len(looks) == 1
        assert all(device is first[0] for device in first)
        _external_change(tmp_path / "cache.db", "ON", NOW + 9)
        await asyncio.sleep(0)
        looks.clear()
        second = await asyncio.gather(*(sqlite_store.get_device(a.id, "dev_a") for _ in range(20)))
    finally:
        reader.set_trace_callback(None)
    assert second[0] is not None
    assert second[0].properties["power"] == PropertyState("ON", NOW + 9)
    assert all(device is second[0] for device in second)
    # one look for the pass, and one after the read that refilled the memory
    assert len(looks) == 2


# the writer's remembered devices ------------------------------------------------------------


def _power_on(seen: list[Device]) -> Callable[[Device], DeviceChange]:
    """A mutator that records the device it was given and switches it on."""

    def mutate(device: Device) -> DeviceChange:
        seen.append(device)
        return DeviceChange(properties={"power": "ON"})

    return mutate


def _external_change(path: Path, value: str, at: float) -> None:
    """Another process changes the power the way every StateRelay writer does: version + 1."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "UPDATE device_properties SET value = ?, changed_at = ?"
            " WHERE device_id = 'dev_a' AND name = 'power'",
            (json.dumps(value), at),
        )
        other.execute("UPDATE devices SET version = version + 1 WHERE id = 'dev_a'")
        other.execute("COMMIT")


async def test_change_after_another_process_changed_the_device_starts_from_its_state(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """The writer's memory of a device it changed gives way to a newer version on disk."""
    a = await with_lamp(sqlite_store)
    await sqlite_store.change_device(
        a.id, "dev_a", lambda d: DeviceChange(properties={"power": "ON"}), NOW + 1, plan=PLAN
    )
    _external_change(tmp_path / "cache.db", "OFF", NOW + 2)
    seen: list[Device] = []
    committed = await sqlite_store.change_device(a.id, "dev_a", _power_on(seen), NOW + 3, plan=PLAN)
    assert seen[0].properties["power"] == PropertyState("OFF", NOW + 2)
    assert seen[0].version == 3
    assert committed.after.version == 4
    assert committed.after.properties["power"] == PropertyState("ON", NOW + 3)


async def test_device_made_again_with_the_same_id_is_read_afresh(
    sqlite_store: SQLiteStore,
) -> None:
    """Deleted and created again (an import keeps ids): a new row, never the old memory."""
    a = await with_lamp(sqlite_store)
    await sqlite_store.change_device(
        a.id, "dev_a", lambda d: DeviceChange(properties={"power": "ON"}), NOW + 1, plan=PLAN
    )
    again = switch(a.id, "dev_a", "Lamp again")
    await sqlite_store.delete_device(
        a.id, "dev_a", removal(created(again), ()), time.time(), plan=PLAN
    )
    await sqlite_store.create_device(again, created(again), (), plan=PLAN)
    seen: list[Device] = []
    await sqlite_store.change_device(a.id, "dev_a", _power_on(seen), NOW + 2, plan=PLAN)
    assert seen[0].name == "Lamp again"
    assert seen[0].properties["power"].value == "OFF"


async def test_memory_of_a_change_whose_commit_failed_is_dropped(
    sqlite_store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change rolled back by a failed COMMIT is forgotten: a later version on disk with the
    same number (written by another process meanwhile) is read, not the lost change."""
    a = await with_lamp(sqlite_store)
    real_commit = sqlite_engine._commit
    failures = [sqlite3.OperationalError("disk I/O error")]

    def failing_commit(conn: sqlite3.Connection) -> sqlite3.Error | None:
        if failures:
            conn.execute("ROLLBACK")
            return failures.pop()
        return real_commit(conn)

    monkeypatch.setattr(sqlite_engine, "_commit", failing_commit)
    with pytest.raises(sqlite3.OperationalError):
        await sqlite_store.change_device(
            a.id, "dev_a", lambda d: DeviceChange(properties={"power": "ON"}), NOW + 1, plan=PLAN
        )
    # version 2 on disk now holds another process's change, not the lost one
    _external_change(tmp_path / "cache.db", "OFF", NOW + 2)
    seen: list[Device] = []
    await sqlite_store.change_device(a.id, "dev_a", _power_on(seen), NOW + 3, plan=PLAN)
    assert seen[0].version == 2
    assert seen[0].properties["power"] == PropertyState("OFF", NOW + 2)


async def test_memory_of_a_batch_rolled_back_by_a_neighbour_is_dropped(
    sqlite_store: SQLiteStore,
) -> None:
    """A failing write in the same batch undoes its neighbours once; each is then redone
    alone, and the device comes out with exactly the changes that committed."""
    a = await with_lamp(sqlite_store)

    def broken(conn: sqlite3.Connection) -> None:
        raise ValueError("a write that fails")

    first = sqlite_store.change_device(
        a.id, "dev_a", lambda d: DeviceChange(properties={"power": "ON"}), NOW + 1, plan=PLAN
    )
    results = await asyncio.gather(first, sqlite_store.engine.write(broken), return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert not isinstance(results[0], BaseException)
    assert results[0].after.version == 2
    seen: list[Device] = []
    await sqlite_store.change_device(a.id, "dev_a", _power_on(seen), NOW + 2, plan=PLAN)
    assert seen[0].version == 2  # the first change, committed once
    assert seen[0].properties["power"] == PropertyState("ON", NOW + 1)
