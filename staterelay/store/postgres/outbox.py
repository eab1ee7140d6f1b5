"""The outbox on PostgreSQL: leasing rows across replicas, and recording what became of them.

A claim is one ``sr_claim_batch`` call: ``FOR UPDATE SKIP LOCKED`` hands each claimable row
to one replica, which holds it by lease (``lease_owner``, ``lease_until``) while it sends and
renews the lease (``sr_renew_outbox_leases``) while the row waits; the same call says when
the next row falls due. A replica that dies keeps its rows only until the lease runs out;
then another claims them. A batch of results is one ``sr_record_deliveries`` call, each
written under its row's own tenant and only while the writer still holds the row's lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from staterelay.core.records import (
    DeliveryOutcome,
    NewActivity,
    OutboxClaim,
    OutboxItem,
    OutboxStats,
)
from staterelay.store.postgres.delivery import outcomes_json
from staterelay.store.postgres.engine import PostgresEngine, clean_text

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

CLAIM_PER_DESTINATION = 25


async def insert_activity_row(
    conn: Connection, tenant_id: str, activity: NewActivity, at: float
) -> tuple[int, dict[str, Any]]:
    """Insert an activity row; returns its id and the detail mapping stored."""
    detail = dict(activity.detail or {})
    activity_id = await conn.fetchval(
        "INSERT INTO activity_log (tenant_id, device_id, device_name, kind, source, actor,"
        " cause, property, old_value, new_value, detail, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        tenant_id,
        activity.device_id,
        activity.device_name,
        activity.kind,
        activity.source,
        clean_text(activity.actor),
        clean_text(activity.cause),
        activity.property,
        activity.old_value,
        activity.new_value,
        detail,
        at,
    )
    return int(activity_id), detail


def outbox_item(row: Mapping[str, Any]) -> OutboxItem:
    """An ``OutboxItem`` from an outbox row (a record, or its JSON)."""
    return OutboxItem(
        id=int(row["id"]),
        tenant_id=row["tenant_id"],
        sink=row["sink"],
        destination=row["destination"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        device_id=row["device_id"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        created_at=float(row["created_at"]),
        ordering_key=row["ordering_key"],
        mergeable=bool(row["mergeable"]),
    )


class PostgresOutbox:
    """The outbox part of ``Store`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    async def claim_outbox(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> OutboxClaim:
        """Lease claimable rows (a row another replica holds or claims is skipped) and learn
        when the next one falls due, in one round trip."""
        async with self.engine.statement() as conn:
            answer = await conn.fetchval(
                "SELECT sr_claim_batch($1, $2, $3, $4, $5)",
                owner,
                now,
                now + lease_seconds,
                CLAIM_PER_DESTINATION,
                limit,
            )
        due = answer["next_due"]
        return OutboxClaim(
            items=[outbox_item(row) for row in answer["rows"]],
            next_due=None if due is None else float(due),
        )

    async def renew_outbox_leases(
        self, owner: str, ids: Sequence[int], lease_until: float
    ) -> set[int]:
        """Extend the leases ``owner`` still holds, across tenants; returns their ids."""
        if not ids:
            return set()
        async with self.engine.statement() as conn:
            rows = await conn.fetch(
                "SELECT * FROM sr_renew_outbox_leases($1, $2, $3)", owner, list(ids), lease_until
            )
        return {int(row[0]) for row in rows}

    async def record_deliveries(
        self,
        outcomes: Sequence[DeliveryOutcome],
        now: float,
        *,
        owner: str,
        on_written: Callable[[set[int]], None] | None = None,
    ) -> set[int]:
        """Write the results of rows still leased to ``owner``, each under its row's tenant,
        in one round trip; returns the ids written (``on_written`` hears of them first)."""
        recorded: set[int] = set()
        if outcomes:
            async with self.engine.statement() as conn:
                ids = await conn.fetchval(
                    "SELECT sr_record_deliveries($1, $2, $3)", owner, now, outcomes_json(outcomes)
                )
            recorded = {int(row_id) for row_id in ids}
        if on_written is not None and recorded:
            on_written(recorded)
        return recorded

    async def release_leases(self, owner: str | None) -> int:
        """Free one owner's leases; with None only leases that ran out (others are alive)."""
        async with self.engine.statement() as conn:
            return int(await conn.fetchval("SELECT sr_release_leases($1, $2)", owner, time.time()))

    async def next_outbox_due(self) -> float | None:
        """When the earliest claimable row becomes due (or its lease runs out)."""
        async with self.engine.statement() as conn:
            due = await conn.fetchval("SELECT sr_outbox_next_due()")
        return None if due is None else float(due)

    async def outbox_stats(self) -> OutboxStats:
        """Pending and dead counts and the oldest pending row's age, across tenants."""
        async with self.engine.statement() as conn:
            row = await conn.fetchrow("SELECT * FROM sr_outbox_stats()")
        assert row is not None
        return OutboxStats(
            pending=int(row["pending"]),
            dead=int(row["dead"]),
            oldest_pending_at=row["oldest_pending_at"],
        )
