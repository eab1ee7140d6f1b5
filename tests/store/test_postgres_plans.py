"""PostgreSQL only: the functions on the path of every change and read keep their plans, reads
asked for together go in one call (each in its own household), and a change judged on a
remembered device that another replica has moved is judged again."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import asyncpg
import pytest

from staterelay.core.records import Device, DeviceChange
from staterelay.store.postgres.batching import MAX_BATCH
from staterelay.store.postgres.store import PostgresStore
from tests.postgres_support import ScratchDatabase, migrated_database
from tests.store.planning import PLAN
from tests.store.test_contract import NOW, created, power, switch, tenant_with_user

# Every function a change, a read or a re-plan runs. A LANGUAGE sql function with a SET
# clause is never inlined and is parsed and planned again at each call; in PL/pgSQL each
# statement is prepared once per connection.
HOT_PATH = (
    "sr_apply_change",
    "sr_append_timeline",
    "sr_queue_rows",
    "sr_facts_version",
    "sr_device_of",
    "sr_interest_facts_of",
    "sr_get_device",
    "sr_get_devices",
    "sr_change_context",
    "sr_interest_facts",
)
# The ones with subqueries a custom plan would re-plan at every call.
GENERIC_PLANS = ("sr_facts_version", "sr_device_of", "sr_interest_facts_of")


@pytest.fixture
async def database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database, migrated by the owner with the app role granted."""
    async with migrated_database() as fresh:
        yield fresh


async def test_functions_on_the_change_and_read_path_keep_their_plans(
    database: ScratchDatabase,
) -> None:
    """Each is PL/pgSQL; the three with subqueries take the generic plan."""
    conn = await asyncpg.connect(database.admin_url)
    try:
        rows = await conn.fetch(
            "SELECT p.proname, l.lanname, p.proconfig FROM pg_proc p"
            " JOIN pg_language l ON l.oid = p.prolang"
            " WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY($1::text[])",
            list(HOT_PATH),
        )
    finally:
        await conn.close()
    found = {row["proname"]: row for row in rows}
    assert sorted(found) == sorted(HOT_PATH)
    assert {name: row["lanname"] for name, row in found.items()} == dict.fromkeys(
        HOT_PATH, "plpgsql"
    )
    for name in GENERIC_PLANS:
        assert "plan_cache_mode=force_generic_plan" in found[name]["proconfig"], name


async def test_the_functions_answer_as_before(database: ScratchDatabase) -> None:
    """The rewritten readers answer what the store maps: the device with its properties, the
    facts with their version, and nothing for another tenant's device."""
    store = PostgresStore(database.app_url)
    await store.open()
    try:
        a, _ = await tenant_with_user(store, "a")
        await tenant_with_user(store, "b")
        device = switch(a.id, "dev_a", "Lamp")
        await store.create_device(device, created(device), (), plan=PLAN)
        await store.change_device(a.id, "dev_a", lambda d: power("ON"), NOW + 1, plan=PLAN)
        facts = await store.interest_facts(a.id)
    finally:
        await store.close()
    conn = await asyncpg.connect(database.app_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", a.id)
            version = await conn.fetchval("SELECT sr_facts_version($1)", a.id)
        read = await conn.fetchval("SELECT sr_get_device($1, $2)::text", a.id, "dev_a")
        hidden = await conn.fetchval("SELECT sr_get_device($1, $2)", "ten_b", "dev_a")
    finally:
        await conn.close()
    assert version == facts.version
    assert '"power": ["ON", ' in read
    assert '"version": 2' in read
    assert hidden is None


def turn_on(current: Device) -> DeviceChange:
    """What the API's PUT does: nothing when the switch is already on."""
    if current.properties["power"].value == "ON":
        return DeviceChange()
    return power("ON")


async def test_a_no_op_judged_on_a_stale_memory_is_judged_again(database: ScratchDatabase) -> None:
    """Replica A remembers the switch on; replica B turns it off; "turn on" sent to A is no
    no-op: A reads the device again and turns it on."""
    first, second = PostgresStore(database.app_url), PostgresStore(database.app_url)
    await first.open()
    await second.open()
    try:
        a, _ = await tenant_with_user(first, "a")
        device = switch(a.id, "dev_a", "Lamp")
        await first.create_device(device, created(device), (), plan=PLAN)
        await first.change_device(a.id, "dev_a", turn_on, NOW + 1, plan=PLAN)
        await second.change_device(a.id, "dev_a", lambda d: power("OFF"), NOW + 2, plan=PLAN)
        again = await first.change_device(a.id, "dev_a", turn_on, NOW + 3, plan=PLAN)
        assert again.before.properties["power"].value == "OFF"
        assert again.after.version == 4
        assert [entry.new_value for entry in again.activity] == ["ON"]
        settled = await first.change_device(a.id, "dev_a", turn_on, NOW + 4, plan=PLAN)
        assert settled.activity == ()
        assert settled.after.version == 4
        current = await second.get_device(a.id, "dev_a")
        assert current is not None
        assert current.properties["power"].value == "ON"
        assert current.version == 4
    finally:
        await first.close()
        await second.close()


async def test_reads_asked_together_go_in_one_call_each_in_its_household(
    database: ScratchDatabase,
) -> None:
    """Twelve reads in one pass of the loop: one statement per ``MAX_BATCH`` of them; each
    read sees only its own household (another household's device and a missing one are
    None)."""
    store = PostgresStore(database.app_url)
    await store.open()
    try:
        for name in ("a", "b"):
            tenant, _ = await tenant_with_user(store, name)
            device = switch(tenant.id, f"dev_{name}", "Lamp")
            await store.create_device(device, created(device), (), plan=PLAN)
        await store.change_device("ten_b", "dev_b", lambda d: power("ON"), NOW + 1, plan=PLAN)
        statements = 0
        open_statement = store.engine.statement

        @contextlib.asynccontextmanager
        async def counted() -> AsyncIterator[asyncpg.Connection]:
            nonlocal statements
            statements += 1
            async with open_statement() as conn:
                yield conn

        store.engine.statement = counted  # type: ignore[method-assign]
        asked = [("ten_a", "dev_a"), ("ten_b", "dev_b"), ("ten_a", "dev_b"), ("ten_a", "dev_z")]
        read = await asyncio.gather(*(store.get_device(t, d) for t, d in asked * 3))
        assert statements == math.ceil(len(read) / MAX_BATCH)
        before = statements
        alone = await store.get_device("ten_b", "dev_b")
        assert statements == before + 1
    finally:
        await store.close()
    for n in range(3):
        mine, theirs, hidden, missing = read[4 * n : 4 * n + 4]
        assert mine is not None
        assert (mine.tenant_id, mine.id) == ("ten_a", "dev_a")
        assert mine.properties["power"].value == "OFF"
        assert theirs is not None
        assert (theirs.tenant_id, theirs.properties["power"].value) == ("ten_b", "ON")
        assert hidden is None
        assert missing is None
    assert alone == read[1]


async def test_a_failed_call_fails_each_read_asked_with_it(database: ScratchDatabase) -> None:
    """The database unreachable mid-batch: every read of the call raises what it raised."""
    store = PostgresStore(database.app_url)
    await store.open()
    try:

        @contextlib.asynccontextmanager
        async def unreachable() -> AsyncIterator[asyncpg.Connection]:
            raise ConnectionRefusedError("the database is down")
            yield  # pragma: no cover - never reached

        store.engine.statement = unreachable  # type: ignore[method-assign]
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(store.get_device("ten_a", f"dev_{n}") for n in range(3)),
                return_exceptions=True,
            ),
            timeout=5,
        )
    finally:
        await store.close()
    assert [type(outcome) for outcome in outcomes] == [ConnectionRefusedError] * 3
