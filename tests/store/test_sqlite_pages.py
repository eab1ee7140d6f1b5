"""SQLite databases use 1 KiB pages: new ones from the start, older ones rewritten once."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from staterelay.store.sqlite.engine import PAGE_SIZE, WAL_CHECKPOINT_PAGES, connect
from staterelay.store.sqlite.store import SQLiteStore
from tests.store.planning import PLAN
from tests.store.test_contract import created, switch, tenant_with_user


def pragma(path: Path, name: str) -> object:
    """One pragma's value, read by a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


async def test_a_new_database_has_small_pages_and_a_4_mib_wal(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "new.db")
    await store.open()
    try:
        assert pragma(tmp_path / "new.db", "page_size") == PAGE_SIZE == 1024
        assert pragma(tmp_path / "new.db", "journal_mode") == "wal"
        with contextlib.closing(connect(tmp_path / "new.db", synchronous="FULL")) as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 4096
        assert WAL_CHECKPOINT_PAGES * PAGE_SIZE == 4 * 1024 * 1024
    finally:
        await store.close()


async def test_an_older_database_is_rewritten_once_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE early (x)")
        conn.executemany("INSERT INTO early VALUES (?)", [(n,) for n in range(500)])
        conn.commit()
    assert pragma(path, "page_size") == 4096
    store = SQLiteStore(path)
    await store.open()
    try:
        tenant, _ = await tenant_with_user(store, "a")
        device = switch(tenant.id, "dev_a", "Lamp")
        await store.create_device(device, created(device), (), plan=PLAN)
    finally:
        await store.close()
    assert pragma(path, "page_size") == 1024
    assert pragma(path, "journal_mode") == "wal"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM early").fetchone()[0] == 500
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert (await reopened.get_device(tenant.id, "dev_a")) is not None
    finally:
        await reopened.close()


async def test_a_database_in_use_elsewhere_keeps_its_pages_for_now(tmp_path: Path) -> None:
    """Another process reading the database (a command run meanwhile) defers the rewrite
    to a later start; the store opens and works all the same."""
    path = tmp_path / "busy.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE early (x)")
    with contextlib.closing(sqlite3.connect(path)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM early").fetchone()
        store = SQLiteStore(path)
        await store.open()
        try:
            tenant, _ = await tenant_with_user(store, "a")
            assert tenant.id
        finally:
            await store.close()
        reader.execute("COMMIT")
    assert pragma(path, "page_size") == 4096
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    assert pragma(path, "page_size") == 1024
