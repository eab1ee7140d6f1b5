"""PostgreSQL implementation of the billing part of the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from staterelay.core.records import NewActivity
from staterelay.core.records.billing import BillingState, Subscription, Usage
from staterelay.store.postgres.engine import PostgresEngine
from staterelay.store.postgres.outbox import insert_activity_row
from staterelay.store.sqlite.billing import SUBSCRIPTION_COLUMNS, subscription_from_row


class PostgresBilling:
    """``BillingStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    async def billing_state(self, tenant_id: str) -> BillingState:
        """The subscription row and the suspended devices, in one read-only transaction."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {SUBSCRIPTION_COLUMNS}, ARRAY(SELECT device_id FROM device_suspensions"
                " WHERE tenant_id = $1) AS suspended FROM (SELECT $1::text AS t) AS one"
                " LEFT JOIN subscriptions ON subscriptions.tenant_id = one.t",
                tenant_id,
            )
        assert row is not None
        suspended = frozenset(row["suspended"] or ())
        if row["tenant_id"] is None:
            return BillingState(subscription=None, suspended=suspended)
        return BillingState(subscription=subscription_from_row(tuple(row)), suspended=suspended)

    async def save_billing(
        self,
        subscription: Subscription,
        *,
        activity: Sequence[NewActivity] = (),
        suspended: Sequence[str] | None = None,
        event_id: str | None = None,
        now: float,
    ) -> bool:
        """Event, subscription row, activity and suspensions in one transaction."""
        tenant_id = subscription.tenant_id
        async with self.engine.tenant(tenant_id) as conn:
            if event_id is not None:
                inserted = await conn.fetchval(
                    "INSERT INTO stripe_events (id, tenant_id, processed_at) VALUES ($1, $2, $3)"
                    " ON CONFLICT (id) DO NOTHING RETURNING true",
                    event_id,
                    tenant_id,
                    now,
                )
                if not inserted:
                    return False
            await conn.execute(
                f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT (tenant_id) DO UPDATE SET plan_key = excluded.plan_key,"
                " status = excluded.status, stripe_customer_id = excluded.stripe_customer_id,"
                " stripe_subscription_id = excluded.stripe_subscription_id,"
                " current_period_end = excluded.current_period_end,"
                " cancel_at_period_end = excluded.cancel_at_period_end,"
                " past_due_since = excluded.past_due_since,"
                " enforced_plan = excluded.enforced_plan,"
                " kept_devices = excluded.kept_devices, updated_at = excluded.updated_at",
                tenant_id,
                subscription.plan_key,
                subscription.status,
                subscription.customer_id,
                subscription.subscription_id,
                subscription.current_period_end,
                subscription.cancel_at_period_end,
                subscription.past_due_since,
                subscription.enforced_plan,
                list(subscription.kept_devices),
                subscription.updated_at,
            )
            for entry in activity:
                await insert_activity_row(conn, tenant_id, entry, now)
            if suspended is not None:
                await conn.execute("DELETE FROM device_suspensions WHERE tenant_id = $1", tenant_id)
                await conn.execute(
                    "INSERT INTO device_suspensions (tenant_id, device_id, suspended_at)"
                    " SELECT $1, d.id, $3 FROM devices d WHERE d.tenant_id = $1"
                    " AND d.id = ANY($2::text[])",
                    tenant_id,
                    list(suspended),
                    now,
                )
        return True

    async def save_customer(self, tenant_id: str, customer_id: str, now: float) -> str:
        """Keep the first customer id a household gets."""
        async with self.engine.tenant(tenant_id) as conn:
            kept = await conn.fetchval(
                "INSERT INTO subscriptions (tenant_id, plan_key, status, stripe_customer_id,"
                " updated_at) VALUES ($1, '', 'none', $2, $3)"
                " ON CONFLICT (tenant_id) DO UPDATE SET stripe_customer_id ="
                " coalesce(subscriptions.stripe_customer_id, excluded.stripe_customer_id)"
                " RETURNING stripe_customer_id",
                tenant_id,
                customer_id,
                now,
            )
        return str(kept)

    async def stripe_event_seen(self, tenant_id: str, event_id: str) -> bool:
        """Whether the event was processed for the household."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            seen = await conn.fetchval(
                "SELECT true FROM stripe_events WHERE id = $1 AND tenant_id = $2",
                event_id,
                tenant_id,
            )
        return bool(seen)

    async def tenant_for_customer(self, customer_id: str) -> str | None:
        """The household of a Stripe customer, through the one cross-tenant function."""
        async with self.engine.statement() as conn:
            found = await conn.fetchval("SELECT sr_billing_customer_tenant($1)", customer_id)
        return None if found is None else str(found)

    async def add_usage(
        self, tenant_id: str, month: str, *, state_changes: int, deliveries: int
    ) -> None:
        """Add to a month's counts."""
        async with self.engine.tenant(tenant_id) as conn:
            await conn.execute(
                "INSERT INTO usage_monthly (tenant_id, month, state_changes, deliveries)"
                " SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1)"
                " ON CONFLICT (tenant_id, month) DO UPDATE SET"
                " state_changes = usage_monthly.state_changes + excluded.state_changes,"
                " deliveries = usage_monthly.deliveries + excluded.deliveries",
                tenant_id,
                month,
                state_changes,
                deliveries,
            )

    async def get_usage(self, tenant_id: str, month: str) -> Usage:
        """A month's counts."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT state_changes, deliveries FROM usage_monthly"
                " WHERE tenant_id = $1 AND month = $2",
                tenant_id,
                month,
            )
        if row is None:
            return Usage(month=month)
        return Usage(month=month, state_changes=int(row[0]), deliveries=int(row[1]))

    async def prune_activity_by_plan(
        self, older_than: Mapping[str, float], *, default: float
    ) -> int:
        """Delete activity older than each household's plan keeps (a listed definer)."""
        async with self.engine.statement() as conn:
            removed = await conn.fetchval(
                "SELECT sr_prune_activity_by_plan($1::text[], $2::double precision[], $3)",
                list(older_than),
                list(older_than.values()),
                default,
            )
        return int(removed or 0)

    async def delete_tenant(self, tenant_id: str) -> int:
        """Every table with a tenant_id column, then the tenant, under the tenant's RLS."""
        removed = 0
        async with self.engine.tenant(tenant_id) as conn:
            tables = await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
                " AND a.attname = 'tenant_id' AND NOT a.attisdropped ORDER BY c.relname"
            )
            for row in tables:
                status = await conn.execute(
                    f'DELETE FROM "{row[0]}" WHERE tenant_id = $1', tenant_id
                )
                removed += int(status.rsplit(" ", 1)[1])
            status = await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
            removed += int(status.rsplit(" ", 1)[1])
        return removed
