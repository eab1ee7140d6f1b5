"""SQLite's remembered device reads: reused while nothing commits, never stale after a commit."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.store import open_store
from staterelay.store.records import DeviceChange, PropertyState
from staterelay.store.sqlite import SQLiteStore
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


async def test_unchanged_database_answers_from_memory(sqlite_store: SQLiteStore) -> None:
    """Two reads with no commit between them give the same record without a second query."""
    a, _ = await tenant_with_user(sqlite_store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await sqlite_store.create_device(device, created(device), ())
    first = await sqlite_store.get_device(a.id, "dev_a")
    assert await sqlite_store.get_device(a.id, "dev_a") is first
    assert await sqlite_store.get_device(a.id, "dev_missing") is None


async def test_own_commit_is_seen(sqlite_store: SQLiteStore) -> None:
    """A change through the store replaces what was remembered."""
    a, _ = await tenant_with_user(sqlite_store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await sqlite_store.create_device(device, created(device), ())
    assert (await sqlite_store.get_device(a.id, "dev_a")) is not None
    committed = await sqlite_store.change_device(
        a.id, "dev_a", lambda d: DeviceChange(properties={"power": "ON"}), NOW + 5
    )
    assert await sqlite_store.get_device(a.id, "dev_a") == committed.after


async def test_commit_by_another_connection_is_seen(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """A commit by another process (the CLI, a second connection) is never hidden."""
    a, _ = await tenant_with_user(sqlite_store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await sqlite_store.create_device(device, created(device), ())
    before = await sqlite_store.get_device(a.id, "dev_a")
    assert before is not None
    assert before.properties["power"].value == "OFF"
    with contextlib.closing(sqlite3.connect(tmp_path / "cache.db", isolation_level=None)) as other:
        other.execute(
            "UPDATE device_properties SET value = ?, changed_at = ? WHERE device_id = ?",
            (json.dumps("ON"), NOW + 9, "dev_a"),
        )
    after = await sqlite_store.get_device(a.id, "dev_a")
    assert after is not None
    assert after.properties["power"] == PropertyState("ON", NOW + 9)
