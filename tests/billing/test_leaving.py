"""Leaving: export, a paid subscription cancelled in Stripe first, then no row of the household
in any table, on both stores (counted table by table)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from staterelay.core.records import NewActivity, Tenant, User
from staterelay.settings import Settings
from staterelay.store import open_store
from tests.billing.conftest import HomeFactory
from tests.billing.fake_stripe import PRO_LOOKUP, FakeStripe, signed
from tests.postgres_support import fresh_database
from tests.store.planning import PLAN
from tests.store.test_billing_contract import paid
from tests.store.test_contract import NOW, created, hook, switch


def sqlite_counts(path: Path, tenant_id: str) -> dict[str, int]:
    """Rows of ``tenant_id`` in every table that has a tenant_id column (and tenants)."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' AND EXISTS"
                " (SELECT 1 FROM pragma_table_info(m.name) c WHERE c.name = 'tenant_id')"
            )
        ]
        counts = {
            table: conn.execute(
                f'SELECT count(*) FROM "{table}" WHERE tenant_id = ?', (tenant_id,)
            ).fetchone()[0]
            for table in tables
        }
        counts["tenants"] = conn.execute(
            "SELECT count(*) FROM tenants WHERE id = ?", (tenant_id,)
        ).fetchone()[0]
        return counts
    finally:
        conn.close()


async def test_export_then_delete_cancels_stripe_first_and_leaves_no_row(
    household: HomeFactory, stripe_fake: FakeStripe, hosted: Settings, hosted_app: web.Application
) -> None:
    home = await household("leaving@example.com")
    stays = await household("stays@example.com")
    tenant = home.user.tenant_id
    core = home.core
    customer = await core.billing.save_customer(tenant, stripe_fake.new_id("cus"))
    subscription = stripe_fake.subscribe(customer, PRO_LOOKUP)
    body, header = signed(stripe_fake.event("customer.subscription.created", subscription))
    hooked = await home.browser.client.post(
        "/billing/stripe/webhook", data=body, headers={"Stripe-Signature": header}
    )
    assert hooked.status == 200
    lamp = await home.add_device("switch", "Lamp")
    await home.post(f"/dashboard/devices/{lamp}/state", {"power": "ON"})
    await core.webhooks.create(home.principal, {"url": "http://127.0.0.1:9/hook"})
    await core.usage.flush()
    await stays.add_device("switch", "Neighbour lamp")
    database = hosted.data_dir / "staterelay.db"
    before = sqlite_counts(database, tenant)
    assert before["devices"] == 1
    assert before["subscriptions"] == before["usage_monthly"] == before["stripe_events"] == 1
    assert before["activity_log"] >= 3

    exported = await home.browser.get("/dashboard/billing/export")
    document = json.loads(await exported.text())
    assert exported.headers["Content-Disposition"].startswith("attachment;")
    assert [d["name"] for d in document["devices"]] == ["Lamp"]
    assert document["devices"][0]["state"]["power"] == "ON"
    assert "billing.changed" in {entry["kind"] for entry in document["activity"]}

    page = await home.browser.page("/dashboard/billing/leave")
    assert "Your paid subscription is cancelled in Stripe first" in page
    wrong = await home.post("/dashboard/billing/leave", {"confirm": "someone@example.com"})
    assert wrong.status == 422
    assert sqlite_counts(database, tenant)["devices"] == 1
    assert not stripe_fake.made("DELETE", f"/v1/subscriptions/{subscription['id']}")

    left = await home.post("/dashboard/billing/leave", {"confirm": "Leaving@Example.com"})

    assert left.status == 303
    cancels = stripe_fake.made("DELETE", f"/v1/subscriptions/{subscription['id']}")
    (cancel,) = cancels
    assert cancel.headers["Idempotency-Key"] == f"cancel:{subscription['id']}"
    after = sqlite_counts(database, tenant)
    assert after == dict.fromkeys(after, 0), {k: v for k, v in after.items() if v}
    assert sqlite_counts(database, stays.user.tenant_id)["devices"] == 1
    signed_out = await home.browser.get("/dashboard")
    assert signed_out.status == 303


async def test_stripe_refusing_the_cancellation_deletes_nothing(
    household: HomeFactory, stripe_fake: FakeStripe, hosted: Settings
) -> None:
    home = await household("stuck@example.com")
    customer = await home.core.billing.save_customer(home.user.tenant_id, "cus_stuck")
    subscription = stripe_fake.subscribe(customer, PRO_LOOKUP)
    await home.core.billing.apply(
        home.user.tenant_id, await stripe_api(home).subscription_of(customer)
    )
    stripe_fake.fail_next = 10

    refused = await home.post("/dashboard/billing/leave", {"confirm": "stuck@example.com"})

    assert refused.status == 502
    assert "nothing was deleted" in await refused.text()
    counts = sqlite_counts(hosted.data_dir / "staterelay.db", home.user.tenant_id)
    assert counts["tenants"] == counts["subscriptions"] == 1
    assert subscription["status"] == "active"


async def test_only_an_admin_may_export_or_delete_the_household(household: HomeFactory) -> None:
    member = await household("member@example.com", is_admin=False)
    response = await member.post("/dashboard/billing/leave", {"confirm": "member@example.com"})
    assert response.headers["Location"] == "/dashboard/billing?error=admin"
    exported = await member.browser.get("/dashboard/billing/export")
    assert exported.headers["Location"] == "/dashboard/billing?error=admin"
    assert await member.core.store.get_tenant(member.user.tenant_id) is not None


def stripe_api(home: Any) -> Any:
    from staterelay.integrations.billing.dashboard import STRIPE_API_KEY

    return home.browser.app[STRIPE_API_KEY]


async def test_postgres_deletes_every_row_of_the_household_only() -> None:
    async with fresh_database() as database:
        store = open_store(database.app_url, migrate_url=database.owner_url)
        await store.open()
        try:
            for name in ("gone", "kept"):
                tenant = await store.create_tenant(Tenant(f"ten_{name}", name, NOW))
                await store.create_user(
                    User(f"usr_{name}", tenant.id, f"{name}@example.com", True, NOW)
                )
                device = switch(tenant.id, f"dev_{name}", "Lamp")
                await store.create_device(device, created(device), (), plan=PLAN)
                await store.create_webhook(hook(tenant.id, f"wh_{name}"))
                await store.save_billing(
                    paid(tenant.id),
                    activity=(NewActivity(kind="billing.changed", source="system", actor="x"),),
                    suspended=[f"dev_{name}"],
                    event_id=f"evt_{name}",
                    now=NOW,
                )
                await store.add_usage(tenant.id, "2027-01", state_changes=1, deliveries=1)

            removed = await store.delete_tenant("ten_gone")
        finally:
            await store.close()
        assert removed >= 9
        admin = await asyncpg.connect(database.admin_url)
        try:
            tables = [
                row[0]
                for row in await admin.fetch(
                    "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
                    " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
                    " AND a.attname = 'tenant_id' AND NOT a.attisdropped"
                )
            ]
            assert {"subscriptions", "usage_monthly", "device_suspensions"} <= set(tables)
            for tenant_id, expect_rows in (("ten_gone", False), ("ten_kept", True)):
                counts = {
                    table: await admin.fetchval(
                        f'SELECT count(*) FROM "{table}" WHERE tenant_id = $1', tenant_id
                    )
                    for table in tables
                }
                counts["tenants"] = await admin.fetchval(
                    "SELECT count(*) FROM tenants WHERE id = $1", tenant_id
                )
                if expect_rows:
                    assert counts["devices"] == counts["subscriptions"] == counts["tenants"] == 1
                else:
                    assert counts == dict.fromkeys(counts, 0), counts
        finally:
            await admin.close()
