"""An integration's own migrations: applied with the bundled ones, in version order, on both
stores; a repeated version refuses to open; ``doctor`` and readiness count them as known."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.app.integration import Integration, IntegrationContext, Parts
from staterelay.app.registry import BUILTIN
from staterelay.ops.doctor import run_checks
from staterelay.settings import Settings
from staterelay.store import open_store
from staterelay.store.sqlite.engine import migration_files
from tests.postgres_support import APP_ROLE, fresh_database

SQLITE_TABLE = "CREATE TABLE example_counts (tenant_id TEXT PRIMARY KEY, changes INTEGER NOT NULL);"
POSTGRES_TABLE = (
    "CREATE TABLE example_counts (tenant_id text PRIMARY KEY, changes integer NOT NULL);"
)


def folder(root: Path, **files: str) -> Path:
    """A migrations folder: ``files`` maps "<dialect>/<file name>" (``/`` as ``__``) to SQL."""
    for key, sql in files.items():
        dialect, name = key.split("__", 1)
        (root / dialect).mkdir(parents=True, exist_ok=True)
        (root / dialect / f"{name}.sql").write_text(sql, encoding="utf-8")
    return root


def versions_in_order(path: Path) -> list[int]:
    """``schema_migrations`` of a SQLite file, in the order they were applied."""
    with sqlite3.connect(path) as conn:
        return [
            row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY rowid")
        ]


async def test_sqlite_applies_an_integrations_folder_after_the_bundled_migrations(
    tmp_path: Path,
) -> None:
    """Version order across folders, the table there to use; a folder added later has its
    migration applied on the next open, and only it."""
    first = folder(
        tmp_path / "example",
        sqlite__1001_example_counts="-- the example's table\n" + SQLITE_TABLE,
        postgres__1001_example_counts=POSTGRES_TABLE,
    )
    path = tmp_path / "db.sqlite"
    store = open_store(f"sqlite:///{path}", migrations=[first])
    await store.open()
    try:
        assert await store.ready()
    finally:
        await store.close()
    bundled = [version for version, _, _ in migration_files()]
    assert versions_in_order(path) == [*bundled, 1001]
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO example_counts VALUES ('ten_x', 3)")

    later = folder(
        tmp_path / "later",
        sqlite__1101_more="ALTER TABLE example_counts ADD COLUMN seen_at REAL;",
    )
    store = open_store(f"sqlite:///{path}", migrations=[first, later])
    await store.open()
    await store.close()
    assert versions_in_order(path) == [*bundled, 1001, 1101]
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT tenant_id, changes, seen_at FROM example_counts"
        ).fetchall() == [("ten_x", 3, None)]


async def test_a_repeated_version_keeps_the_store_closed(tmp_path: Path) -> None:
    """An integration's migration may not reuse a bundled (or another folder's) version."""
    clash = folder(tmp_path / "clash", sqlite__0002_mine=SQLITE_TABLE)
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", migrations=[clash])
    with pytest.raises(ValueError, match=r"0002_accounts\.sql and 0002_mine\.sql share version 2"):
        await store.open()
    await store.close()


async def test_postgres_applies_an_integrations_folder_as_the_owner(tmp_path: Path) -> None:
    """Applied by the owner with the bundled ones, and the app role may use its table."""
    example = folder(
        tmp_path / "example",
        sqlite__1001_example_counts=SQLITE_TABLE,
        postgres__1001_example_counts=POSTGRES_TABLE,
    )
    async with fresh_database() as database:
        store = open_store(database.app_url, migrate_url=database.owner_url, migrations=[example])
        await store.open()
        try:
            assert await store.ready()
        finally:
            await store.close()
        conn = await asyncpg.connect(database.app_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
            assert 1001 in versions
            assert max(v for v in versions if v != 1001) < 1001
            await conn.execute("INSERT INTO example_counts VALUES ('ten_x', 1)")
            assert await conn.fetchval("SELECT changes FROM example_counts") == 1
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
        finally:
            await conn.close()


class WithMigrations(Integration):
    """An integration that only ships migrations."""

    name = "with-migrations"

    def __init__(self, migrations: Path) -> None:
        self.migrations = migrations

    def build(self, context: IntegrationContext) -> Parts:
        """Nothing to build."""
        return Parts()


async def test_the_app_applies_its_integrations_migrations_and_doctor_knows_them(
    aiohttp_client: Callable[..., Any], settings: Settings, tmp_path: Path
) -> None:
    """``create_app`` opens the store with the registry's folders; ``doctor`` calls a
    database without them behind, and one with them up to date."""
    example = WithMigrations(folder(tmp_path / "example", sqlite__1001_example=SQLITE_TABLE))
    registry = (*BUILTIN, example)
    plain: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    assert await plain.app[CORE_KEY].store.ready()
    await plain.close()
    behind = [c for c in run_checks(settings, None, integrations=registry) if c.name == "database"]
    assert [c.status for c in behind] == ["WARN"]
    assert "migrations 1001 not applied yet" in behind[0].message

    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, integrations=registry))
    assert (await client.get("/readyz")).status == 200
    await client.close()
    current = [c for c in run_checks(settings, None, integrations=registry) if c.name == "database"]
    assert [c.status for c in current] == ["OK"]
    # A release without the integration sees a database newer than it knows.
    newer = [c for c in run_checks(settings, None) if c.name == "database"]
    assert [c.status for c in newer] == ["FAIL"]
    assert "newer than this StateRelay" in newer[0].message
