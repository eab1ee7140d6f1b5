"""PostgreSQL only: row-level security in the catalog and in behaviour, the roles, the
cross-tenant functions, migrations under concurrency, and outbox leases across replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from staterelay.core.records import DeliveryOutcome, NewOutboxEvent, Tenant
from staterelay.store import open_store
from staterelay.store.postgres.engine import MigrationError, PostgresEngine
from staterelay.store.postgres.store import PostgresStore
from tests.postgres_support import (
    APP_ROLE,
    OWNER_ROLE,
    ScratchDatabase,
    fresh_database,
    migrated_database,
)
from tests.store.planning import PLAN
from tests.store.test_contract import NOW, created, hook, switch, tenant_with_user

RLS_ERROR = "new row violates row-level security policy"


@pytest.fixture
async def database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database, migrated by the owner with the app role granted."""
    async with migrated_database() as fresh:
        yield fresh


@pytest.fixture
async def pg_store(database: ScratchDatabase) -> AsyncIterator[PostgresStore]:
    """A store on the migrated database, connected as the app role."""
    store = PostgresStore(database.app_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def two_tenants(pg_store: PostgresStore) -> tuple[str, str]:
    """Tenants A and B, each with a user, a device and a webhook."""
    for name in ("a", "b"):
        tenant, _ = await tenant_with_user(pg_store, name)
        device = switch(tenant.id, f"dev_{name}", "Lamp")
        await pg_store.create_device(device, created(device), (), plan=PLAN)
        await pg_store.create_webhook(hook(tenant.id, f"whk_{name}"))
    return "ten_a", "ten_b"


async def connect(url: str) -> asyncpg.Connection:
    """A plain connection, no pool."""
    return await asyncpg.connect(url)


# the catalog ---------------------------------------------------------------------------------


async def test_every_tenant_table_has_forced_row_level_security(database: ScratchDatabase) -> None:
    """Every table with a tenant_id column (and tenants) has RLS enabled, forced, a policy."""
    conn = await connect(database.admin_url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
            " (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'public'"
            "  AND p.tablename = c.relname) AS policies,"
            " (SELECT qual FROM pg_policies p WHERE p.schemaname = 'public'"
            "  AND p.tablename = c.relname AND p.policyname = 'tenant_isolation') AS qual"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
            " AND (c.relname = 'tenants' OR EXISTS (SELECT 1 FROM pg_attribute a"
            "  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))"
        )
    finally:
        await conn.close()
    names = {row["relname"] for row in rows}
    assert {"tenants", "users", "devices", "outbox", "sessions", "oauth_tokens"} <= names
    assert len(names) >= 18
    for row in rows:
        assert row["relrowsecurity"], row["relname"]
        assert row["relforcerowsecurity"], row["relname"]
        assert row["policies"] >= 1, row["relname"]
        # Fail closed: the setting is read without missing_ok, never with a fallback.
        assert row["qual"] is not None, row["relname"]
        assert "current_setting('app.tenant_id'::text)" in row["qual"], row["relname"]
        assert "coalesce" not in row["qual"].lower(), row["relname"]


async def test_the_app_role_is_not_privileged_and_owns_nothing(database: ScratchDatabase) -> None:
    """The app role is neither superuser nor BYPASSRLS, owns no object, is not the owner."""
    conn = await connect(database.admin_url)
    try:
        role = await conn.fetchrow(
            "SELECT oid, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", APP_ROLE
        )
        assert role is not None
        assert not role["rolsuper"]
        assert not role["rolbypassrls"]
        for catalog, column in (
            ("pg_class", "relowner"),
            ("pg_proc", "proowner"),
            ("pg_namespace", "nspowner"),
            ("pg_type", "typowner"),
        ):
            owned = await conn.fetchval(
                f"SELECT count(*) FROM {catalog} WHERE {column} = $1", role["oid"]
            )
            assert owned == 0, catalog
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'devices'"
        )
        assert owner == OWNER_ROLE
        member = await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", APP_ROLE, OWNER_ROLE)
        assert not member
    finally:
        await conn.close()


# The functions that run as their owner, each answering one narrow question across tenants.
CROSS_TENANT_DEFINERS = {
    "sr_first_tenant",
    "sr_user_by_email",
    "sr_count_users",
    "sr_api_key_by_digest",
    "sr_touch_api_keys",
    "sr_prune_activity",
    "sr_claim_outbox",
    "sr_release_leases",
    "sr_outbox_next_due",
    "sr_outbox_stats",
    "sr_session_by_digest",
    "sr_prune_sessions",
    "sr_invite_by_digest",
    "sr_oauth_code_tenant",
    "sr_oauth_token_tenant",
    "sr_touch_oauth_grants",
    "sr_purge_oauth",
    "sr_prune_ifttt",
    "sr_renew_outbox_leases",
    "sr_password_reset_by_digest",
    "sr_list_users",
    "sr_claim_batch",
    "sr_record_deliveries",
    "sr_billing_customer_tenant",
    "sr_prune_activity_by_plan",
}


async def test_cross_tenant_functions_are_narrow_definers(database: ScratchDatabase) -> None:
    """Only the listed cross-tenant sr_* functions are SECURITY DEFINER; every other one runs
    as its caller, under row-level security. All have a fixed search_path, are owned by the
    owner, executable by the app role and not by PUBLIC."""
    conn = await connect(database.admin_url)
    try:
        rows = await conn.fetch(
            "SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) AS owner,"
            " has_function_privilege($1, p.oid, 'EXECUTE') AS app_may,"
            " EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))"
            "  a WHERE a.grantee = 0) AS public_may"
            " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace",
            APP_ROLE,
        )
    finally:
        await conn.close()
    names = {row["proname"] for row in rows}
    assert {"sr_claim_outbox", "sr_api_key_by_digest", "sr_apply_change"} <= names
    definers = {row["proname"] for row in rows if row["prosecdef"]}
    assert definers <= CROSS_TENANT_DEFINERS, definers - CROSS_TENANT_DEFINERS
    for row in rows:
        assert row["proname"].startswith("sr_"), row["proname"]
        assert "search_path=public, pg_temp" in (row["proconfig"] or []), row["proname"]
        assert row["owner"] == OWNER_ROLE
        assert row["app_may"], row["proname"]
        assert not row["public_may"], row["proname"]


async def test_invoker_functions_cannot_reach_another_tenant(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """sr_device_of runs as its caller: asked for tenant B's device while the transaction
    is A's, row-level security hides it."""
    a, b = two_tenants
    conn = await connect(database.app_url)
    try:
        device_id = "dev_b"
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", b)
            seen = await conn.fetchval("SELECT sr_device_of($1, $2)", b, device_id)
        assert seen is not None
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a)
            hidden = await conn.fetchval("SELECT sr_device_of($1, $2)", b, device_id)
        assert hidden is None
    finally:
        await conn.close()


# behaviour as the app role ---------------------------------------------------------------------


async def test_tenant_a_cannot_see_or_touch_tenant_b(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """With tenant A set: B's rows are invisible, UPDATE/DELETE of B's ids change nothing,
    and a row inserted with B's tenant id is refused by the policy."""
    a, b = two_tenants
    conn = await connect(database.app_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a)
            assert await conn.fetchval("SELECT count(*) FROM devices WHERE id = 'dev_b'") == 0
            assert [r["id"] for r in await conn.fetch("SELECT id FROM devices")] == ["dev_a"]
            assert [r["id"] for r in await conn.fetch("SELECT id FROM tenants")] == [a]
            assert await conn.fetchval("SELECT count(*) FROM users") == 1
            assert await conn.fetchval("SELECT count(*) FROM webhooks") == 1
            assert await conn.fetchval("SELECT count(*) FROM device_properties") == 1
            assert await conn.fetchval("SELECT count(*) FROM activity_log") == 1
            assert (
                await conn.execute("UPDATE devices SET name = 'Pwned' WHERE id = 'dev_b'")
                == "UPDATE 0"
            )
            assert await conn.execute("DELETE FROM devices WHERE id = 'dev_b'") == "DELETE 0"
            assert await conn.execute("DELETE FROM webhooks WHERE tenant_id = $1", b) == (
                "DELETE 0"
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=RLS_ERROR):
                await in_savepoint(
                    conn,
                    "INSERT INTO devices (id, tenant_id, type, name, name_key, created_at,"
                    " updated_at) VALUES ('dev_x', $1, 'switch', 'X', 'x', 0, 0)",
                    b,
                )
            # Moving one of A's rows to B is refused too.
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=RLS_ERROR):
                await in_savepoint(conn, "UPDATE devices SET tenant_id = $1 WHERE id = 'dev_a'", b)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=RLS_ERROR):
                await in_savepoint(
                    conn, "INSERT INTO tenants (id, name, created_at) VALUES ($1, 'b2', 0)", b
                )
    finally:
        await conn.close()
    device_b = await _device_name(database, b, "dev_b")
    assert device_b == "Lamp"


async def in_savepoint(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    """Run one statement in a savepoint, so its failure leaves the transaction usable."""
    async with conn.transaction():
        await conn.execute(sql, *args)


async def _device_name(database: ScratchDatabase, tenant_id: str, device_id: str) -> str | None:
    store = PostgresStore(database.app_url)
    await store.open()
    try:
        device = await store.get_device(tenant_id, device_id)
        return None if device is None else device.name
    finally:
        await store.close()


async def test_no_tenant_set_fails_closed(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """On a new connection the setting does not exist: a tenant-table statement errors;
    after a transaction that set it, it reads '' and every tenant table shows nothing."""
    a, _ = two_tenants
    conn = await connect(database.app_url)
    try:
        with pytest.raises(asyncpg.UndefinedObjectError, match=r"app\.tenant_id"):
            await conn.fetch("SELECT id FROM devices")
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a)
            assert await conn.fetchval("SELECT count(*) FROM devices") == 1
        assert await conn.fetchval("SELECT current_setting('app.tenant_id')") == ""
        for table in ("tenants", "users", "devices", "webhooks", "outbox", "activity_log"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        assert await conn.execute("UPDATE devices SET name = 'x'") == "UPDATE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=RLS_ERROR):
            await conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES ('ten_c', 'c', 0)"
            )
    finally:
        await conn.close()


async def test_a_pooled_connection_forgets_the_tenant(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """The engine's one pooled connection, reused after tenant A's transaction, sees
    nothing in a transaction that names no tenant."""
    a, _ = two_tenants
    engine = PostgresEngine(database.app_url, pool_size=1)
    await engine.open()
    try:
        async with engine.tenant(a) as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
            assert await conn.fetchval("SELECT count(*) FROM devices") == 1
        async with engine.instance() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == first
            assert await conn.fetchval("SELECT current_setting('app.tenant_id')") == ""
            assert await conn.fetchval("SELECT count(*) FROM devices") == 0
            assert await conn.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await engine.close()


async def test_the_app_role_cannot_switch_security_off(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """Neither ALTER TABLE nor row_security = off gets the app role past the policies."""
    conn = await connect(database.app_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE devices DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP POLICY tenant_isolation ON devices")
        await conn.execute("SET row_security = off")
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', '', true)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.fetch("SELECT id FROM devices")
    finally:
        await conn.close()


async def test_cross_tenant_lookups_go_through_the_functions(
    pg_store: PostgresStore, two_tenants: tuple[str, str]
) -> None:
    """Digest lookups and the instance-wide questions answer without a tenant set."""
    assert (await pg_store.first_tenant()) == Tenant("ten_a", "a", NOW)
    assert await pg_store.count_users() == 2
    found = await pg_store.find_user_by_email("B@example.com")
    assert found is not None
    assert found.tenant_id == "ten_b"
    assert (await pg_store.settings_report())["row_level_security"] == "enforced"


# migrations -------------------------------------------------------------------------------------


async def test_replicas_starting_together_migrate_once() -> None:
    """Three stores opening at once on an empty database: each migration is applied once."""
    async with fresh_database() as database:
        stores = [open_store(database.app_url, migrate_url=database.owner_url) for _ in range(3)]
        await asyncio.gather(*(store.open() for store in stores))
        try:
            assert all([await store.ready() for store in stores])
        finally:
            for store in stores:
                await store.close()
        conn = await connect(database.admin_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()
        assert sorted(versions) == sorted(set(versions))
        assert versions


async def test_the_app_role_cannot_migrate_and_says_what_to_do() -> None:
    """Without the owner's URL the app role cannot create tables: the error names the fix."""
    async with fresh_database() as database:
        store = open_store(database.app_url)
        with pytest.raises(MigrationError, match=r"database\.migrate_url"):
            await store.open()


# the outbox across replicas ---------------------------------------------------------------------


def device_events(count: int) -> list[NewOutboxEvent]:
    """Test sends about ``count`` devices: one row per ordering key."""
    return [
        NewOutboxEvent(event_type="webhook.test", device_id=f"dev_{i}", payload={})
        for i in range(count)
    ]


async def test_two_replicas_deliver_each_key_in_order_and_never_at_once(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """Two replicas draining rows of three keys: a key's rows are held by one replica at a
    time, and each key's rows are finished in the order they were written."""
    a, _ = two_tenants
    replicas = [PostgresStore(database.app_url), PostgresStore(database.app_url)]
    for replica in replicas:
        await replica.open()
    try:
        for _ in range(20):
            assert (
                await replicas[0].enqueue_events(a, device_events(3), time.time(), plan=PLAN) == 3
            )
        held: dict[str, str] = {}
        finished: dict[str, list[int]] = {}
        overlaps: list[str] = []
        now = time.time()

        async def work(replica: PostgresStore, owner: str) -> None:
            idle = 0
            while idle < 20:
                batch = (await replica.claim_outbox(owner, now, 60, 2)).items
                if not batch:
                    idle += 1
                    await asyncio.sleep(0.005)
                    continue
                idle = 0
                for item in batch:
                    if item.ordering_key in held:
                        overlaps.append(item.ordering_key)
                    held[item.ordering_key] = owner
                await asyncio.sleep(0.002)  # "sending"
                outcomes = [
                    DeliveryOutcome(
                        item,
                        delivered=True,
                        dead=False,
                        next_attempt_at=None,
                        status_code=204,
                        error=None,
                        duration_ms=1.0,
                        activity=None,
                    )
                    for item in batch
                ]
                for item in batch:
                    del held[item.ordering_key]
                    finished.setdefault(item.ordering_key, []).append(item.id)
                assert await replica.record_deliveries(outcomes, now, owner=owner) == {
                    item.id for item in batch
                }

        await asyncio.gather(work(replicas[0], "replica-1"), work(replicas[1], "replica-2"))
        assert overlaps == []
        assert sorted(finished) == [f"webhook:whk_a:dev_{i}" for i in range(3)]
        for ids in finished.values():
            assert len(ids) == 20
            assert ids == sorted(ids)
    finally:
        for replica in replicas:
            await replica.close()


async def test_two_replicas_never_claim_the_same_row(
    database: ScratchDatabase, two_tenants: tuple[str, str]
) -> None:
    """Two stores (two pools, as two replicas) claiming at once split the rows between them."""
    a, b = two_tenants
    replicas = [PostgresStore(database.app_url), PostgresStore(database.app_url)]
    for replica in replicas:
        await replica.open()
    try:
        assert (
            await replicas[0].enqueue_events(a, device_events(120), time.time(), plan=PLAN) == 120
        )
        assert (
            await replicas[0].enqueue_events(b, device_events(120), time.time(), plan=PLAN) == 120
        )
        now = time.time()

        async def drain(replica: PostgresStore, owner: str) -> list[int]:
            got: list[int] = []
            while batch := (await replica.claim_outbox(owner, now, 60, 7)).items:
                got += [item.id for item in batch]
            return got

        first, second = await asyncio.gather(
            drain(replicas[0], "replica-1"), drain(replicas[1], "replica-2")
        )
        assert not set(first) & set(second)
        assert len(first) + len(second) == 240
        assert first
        assert second
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_dead_replicas_rows_return_after_the_lease_and_live_leases_stay(
    pg_store: PostgresStore, two_tenants: tuple[str, str]
) -> None:
    """release_leases(None) frees no live lease; an expired lease is claimable by another."""
    a, _ = two_tenants
    await pg_store.enqueue_events(a, device_events(3), time.time(), plan=PLAN)
    now = time.time()
    assert len((await pg_store.claim_outbox("replica-1", now, 30, 10)).items) == 3
    assert await pg_store.release_leases(None) == 0
    assert (await pg_store.claim_outbox("replica-2", now + 1, 30, 10)).items == []
    # replica-1 is killed: nothing records its rows; after the lease they go to replica-2.
    taken = (await pg_store.claim_outbox("replica-2", now + 31, 30, 10)).items
    assert len(taken) == 3
    assert all(item.tenant_id == a for item in taken)


async def test_claims_are_fair_across_destinations(
    pg_store: PostgresStore, two_tenants: tuple[str, str]
) -> None:
    """A backlog of one destination does not fill a claim while another destination waits."""
    a, b = two_tenants
    await pg_store.enqueue_events(a, device_events(60), time.time(), plan=PLAN)
    await pg_store.enqueue_events(b, device_events(1), time.time(), plan=PLAN)
    claimed = (await pg_store.claim_outbox("w", time.time() + 1, 30, 40)).items
    assert {item.destination for item in claimed} == {"whk_a", "whk_b"}
    assert sum(item.destination == "whk_a" for item in claimed) == 25
