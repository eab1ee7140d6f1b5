"""Device-scoped API keys in the store: the device list round-trips, and upgrades keep keys."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from staterelay.core.records import ApiKey, Device, NewActivity, PropertyState
from staterelay.store import Store, open_store
from staterelay.store.postgres import engine as postgres_engine
from staterelay.store.sqlite import engine as sqlite_engine
from tests.postgres_support import fresh_database
from tests.store.conftest import BACKENDS
from tests.store.planning import PLAN
from tests.store.test_contract import NOW, tenant_with_user


def key(tenant_id: str, user_id: str, key_id: str, device_ids: tuple[str, ...] | None) -> ApiKey:
    """A fresh key of a user, limited to ``device_ids``."""
    return ApiKey(
        id=key_id,
        tenant_id=tenant_id,
        user_id=user_id,
        name=key_id,
        prefix="sr_abcd",
        scopes=("read", "write"),
        created_at=NOW,
        last_used_at=None,
        revoked_at=None,
        device_ids=device_ids,
    )


def device(tenant_id: str, device_id: str) -> Device:
    """A switch, off."""
    return Device(
        seq=0,
        id=device_id,
        tenant_id=tenant_id,
        type="switch",
        name=device_id,
        description="",
        options={},
        properties={"power": PropertyState(value="OFF", changed_at=NOW)},
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def created(item: Device) -> NewActivity:
    """The activity row of a device's creation."""
    return NewActivity(
        kind="device.created",
        source="api",
        actor=None,
        device_id=item.id,
        device_name=item.name,
    )


async def test_device_ids_round_trip_through_create_find_and_list(store: Store) -> None:
    """A scoped key keeps its devices in order; an unrestricted one stays None."""
    tenant, user = await tenant_with_user(store, "a")
    scoped = key(tenant.id, user.id, "key_scoped", ("dev_b", "dev_a"))
    wide = key(tenant.id, user.id, "key_wide", None)
    assert await store.create_api_key(scoped, "digest-scoped") == scoped
    await store.create_api_key(wide, "digest-wide")
    found = await store.find_api_key("digest-scoped")
    assert found == scoped
    assert found is not None
    assert found.device_ids == ("dev_b", "dev_a")
    unrestricted = await store.find_api_key("digest-wide")
    assert unrestricted is not None
    assert unrestricted.device_ids is None
    listed = {item.id: item.device_ids for item in await store.list_api_keys(tenant.id, user.id)}
    assert listed == {"key_scoped": ("dev_b", "dev_a"), "key_wide": None}
    assert await store.revoke_api_key(tenant.id, user.id, "key_scoped", NOW + 1)
    revoked = await store.find_api_key("digest-scoped")
    assert revoked is not None
    assert revoked.device_ids == ("dev_b", "dev_a")


async def test_activity_can_be_limited_to_some_devices(store: Store) -> None:
    """``device_ids`` keeps only those devices' rows; an empty list keeps none."""
    tenant, _ = await tenant_with_user(store, "a")
    for device_id in ("dev_a", "dev_b", "dev_c"):
        item = device(tenant.id, device_id)
        await store.create_device(item, created(item), (), plan=PLAN)
    every = await store.list_activity(tenant.id, limit=10)
    assert {entry.device_id for entry in every} == {"dev_a", "dev_b", "dev_c"}
    some = await store.list_activity(tenant.id, device_ids=["dev_c", "dev_a"], limit=10)
    assert [entry.device_id for entry in some] == ["dev_c", "dev_a"]
    one = await store.list_activity(
        tenant.id, device_id="dev_b", device_ids=["dev_a", "dev_b"], limit=10
    )
    assert [entry.device_id for entry in one] == ["dev_b"]
    outside = await store.list_activity(
        tenant.id, device_id="dev_c", device_ids=["dev_a"], limit=10
    )
    assert outside == []
    assert await store.list_activity(tenant.id, device_ids=[], limit=10) == []


_LEGACY_KEY = (
    "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, digest, scopes, created_at)"
    " VALUES ('key_old', 'ten_a', 'usr_a', 'key_old', 'sr_abcd', 'digest-old', {scopes}, {now})"
)


@asynccontextmanager
async def _database(
    backend: str, tmp_path: Path
) -> AsyncIterator[tuple[Callable[[], Store], Callable[[], Awaitable[None]]]]:
    """A store factory on one database of ``backend``, and a writer of a pre-0006 key row."""
    if backend == "sqlite":
        path = tmp_path / "upgrade.db"

        async def write_sqlite() -> None:
            with closing(sqlite3.connect(path)) as conn, conn:
                conn.execute(_LEGACY_KEY.format(scopes="'read write'", now=NOW))

        yield (lambda: open_store(f"sqlite:///{path}")), write_sqlite
        return
    async with fresh_database() as database:

        async def write_postgres() -> None:
            conn = await asyncpg.connect(database.owner_url)
            try:
                await conn.execute(_LEGACY_KEY.format(scopes="ARRAY['read', 'write']", now=NOW))
            finally:
                await conn.close()

        yield (lambda: open_store(database.app_url, migrate_url=database.owner_url)), write_postgres


@pytest.mark.parametrize("backend", BACKENDS)
async def test_keys_made_before_the_migration_reach_every_device(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at migration 5 upgrades in place: existing keys read as unrestricted."""
    engine: Any = sqlite_engine if backend == "sqlite" else postgres_engine
    every = engine.migration_files()
    assert (6, "0006_scoped_keys.sql") in [(m[0], m[1]) for m in every]
    async with _database(backend, tmp_path) as (make_store, write_legacy_key):
        monkeypatch.setattr(engine, "migration_files", lambda: [m for m in every if m[0] < 6])
        old = make_store()
        await old.open()
        try:
            tenant, user = await tenant_with_user(old, "a")
        finally:
            await old.close()
        await write_legacy_key()
        monkeypatch.setattr(engine, "migration_files", lambda: every)
        new = make_store()
        await new.open()
        try:
            assert await new.ready()
            legacy = await new.find_api_key("digest-old")
            assert legacy == key(tenant.id, user.id, "key_old", None)
            scoped = key(tenant.id, user.id, "key_new", ("dev_a",))
            await new.create_api_key(scoped, "digest-new")
            assert await new.find_api_key("digest-new") == scoped
        finally:
            await new.close()
