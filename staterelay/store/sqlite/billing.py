"""SQLite implementation of the billing part of the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from staterelay.core.records import NewActivity
from staterelay.core.records.billing import BillingState, Subscription, Usage
from staterelay.jsoncodec import decode, encode_sorted_text
from staterelay.store.sqlite.activity import insert_activity
from staterelay.store.sqlite.engine import SQLiteEngine

SUBSCRIPTION_COLUMNS = (
    "tenant_id, plan_key, status, stripe_customer_id, stripe_subscription_id,"
    " current_period_end, cancel_at_period_end, past_due_since, enforced_plan, kept_devices,"
    " updated_at"
)


def subscription_from_row(row: Sequence[Any]) -> Subscription:
    """A ``Subscription`` from a row of ``SUBSCRIPTION_COLUMNS`` (kept devices decoded)."""
    kept = row[9]
    if isinstance(kept, str):
        kept = decode(kept)
    return Subscription(
        tenant_id=row[0],
        plan_key=row[1],
        status=row[2],
        customer_id=row[3],
        subscription_id=row[4],
        current_period_end=row[5],
        cancel_at_period_end=bool(row[6]),
        past_due_since=row[7],
        enforced_plan=row[8],
        kept_devices=tuple(kept or ()),
        updated_at=float(row[10]),
    )


class SQLiteBilling:
    """``BillingStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

    async def billing_state(self, tenant_id: str) -> BillingState:
        """The subscription row and the suspended devices, in one snapshot."""

        def read(conn: sqlite3.Connection) -> BillingState:
            row = conn.execute(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            suspended = conn.execute(
                "SELECT device_id FROM device_suspensions WHERE tenant_id = ?", (tenant_id,)
            ).fetchall()
            return BillingState(
                subscription=None if row is None else subscription_from_row(row),
                suspended=frozenset(r[0] for r in suspended),
            )

        return await self.engine.read(read)

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

        def write(conn: sqlite3.Connection) -> bool:
            if event_id is not None:
                inserted = conn.execute(
                    "INSERT INTO stripe_events (id, tenant_id, processed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    (event_id, tenant_id, now),
                ).rowcount
                if not inserted:
                    return False
            conn.execute(
                f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET plan_key = excluded.plan_key,"
                " status = excluded.status, stripe_customer_id = excluded.stripe_customer_id,"
                " stripe_subscription_id = excluded.stripe_subscription_id,"
                " current_period_end = excluded.current_period_end,"
                " cancel_at_period_end = excluded.cancel_at_period_end,"
                " past_due_since = excluded.past_due_since,"
                " enforced_plan = excluded.enforced_plan,"
                " kept_devices = excluded.kept_devices, updated_at = excluded.updated_at",
                (
                    tenant_id,
                    subscription.plan_key,
                    subscription.status,
                    subscription.customer_id,
                    subscription.subscription_id,
                    subscription.current_period_end,
                    int(subscription.cancel_at_period_end),
                    subscription.past_due_since,
                    subscription.enforced_plan,
                    encode_sorted_text(list(subscription.kept_devices)),
                    subscription.updated_at,
                ),
            )
            for entry in activity:
                insert_activity(conn, tenant_id, entry, now)
            if suspended is not None:
                conn.execute("DELETE FROM device_suspensions WHERE tenant_id = ?", (tenant_id,))
                conn.executemany(
                    "INSERT INTO device_suspensions (tenant_id, device_id, suspended_at)"
                    " SELECT ?, ?, ? WHERE EXISTS"
                    " (SELECT 1 FROM devices WHERE tenant_id = ? AND id = ?)",
                    [(tenant_id, d, now, tenant_id, d) for d in suspended],
                )
            return True

        return await self.engine.write(write)

    async def save_customer(self, tenant_id: str, customer_id: str, now: float) -> str:
        """Keep the first customer id a household gets."""

        def write(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO subscriptions (tenant_id, plan_key, status, stripe_customer_id,"
                " updated_at) VALUES (?, '', 'none', ?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET stripe_customer_id ="
                " coalesce(subscriptions.stripe_customer_id, excluded.stripe_customer_id)",
                (tenant_id, customer_id, now),
            )
            row = conn.execute(
                "SELECT stripe_customer_id FROM subscriptions WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            return str(row[0])

        return await self.engine.write(write)

    async def stripe_event_seen(self, tenant_id: str, event_id: str) -> bool:
        """Whether the event was processed for the household."""
        row = await self.engine.read_statement(
            lambda conn: conn.execute(
                "SELECT 1 FROM stripe_events WHERE id = ? AND tenant_id = ?",
                (event_id, tenant_id),
            ).fetchone()
        )
        return row is not None

    async def tenant_for_customer(self, customer_id: str) -> str | None:
        """The household of a Stripe customer."""
        row = await self.engine.read_statement(
            lambda conn: conn.execute(
                "SELECT tenant_id FROM subscriptions WHERE stripe_customer_id = ?",
                (customer_id,),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def add_usage(
        self, tenant_id: str, month: str, *, state_changes: int, deliveries: int
    ) -> None:
        """Add to a month's counts."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO usage_monthly (tenant_id, month, state_changes, deliveries)"
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?)"
                " ON CONFLICT (tenant_id, month) DO UPDATE SET"
                " state_changes = state_changes + excluded.state_changes,"
                " deliveries = deliveries + excluded.deliveries",
                (tenant_id, month, state_changes, deliveries, tenant_id),
            )

        await self.engine.write(write)

    async def get_usage(self, tenant_id: str, month: str) -> Usage:
        """A month's counts."""
        row = await self.engine.read_statement(
            lambda conn: conn.execute(
                "SELECT state_changes, deliveries FROM usage_monthly"
                " WHERE tenant_id = ? AND month = ?",
                (tenant_id, month),
            ).fetchone()
        )
        if row is None:
            return Usage(month=month)
        return Usage(month=month, state_changes=int(row[0]), deliveries=int(row[1]))

    async def prune_activity_by_plan(
        self, older_than: Mapping[str, float], *, default: float
    ) -> int:
        """Delete activity older than each household's plan keeps."""
        cuts = list(older_than.items())

        def write(conn: sqlite3.Connection) -> int:
            values = ", ".join("(?, ?)" for _ in cuts) or "(NULL, NULL)"
            params: list[object] = [value for cut in cuts for value in cut]
            return int(
                conn.execute(
                    "DELETE FROM activity_log WHERE created_at < coalesce(("
                    f" SELECT cut.column2 FROM subscriptions s JOIN (VALUES {values}) AS cut"
                    " ON cut.column1 = s.enforced_plan"
                    " WHERE s.tenant_id = activity_log.tenant_id), ?)",
                    (*params, default),
                ).rowcount
            )

        return await self.engine.write(write)

    async def delete_tenant(self, tenant_id: str) -> int:
        """Every table with a tenant_id column, then the tenant (foreign keys cascade)."""

        def write(conn: sqlite3.Connection) -> int:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT m.name FROM sqlite_master m WHERE m.type = 'table'"
                    " AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) c"
                    " WHERE c.name = 'tenant_id') ORDER BY m.name"
                ).fetchall()
            ]
            removed = 0
            for table in tables:
                removed += conn.execute(
                    f'DELETE FROM "{table}" WHERE tenant_id = ?', (tenant_id,)
                ).rowcount
            removed += conn.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount
            return removed

        return await self.engine.write(write)
