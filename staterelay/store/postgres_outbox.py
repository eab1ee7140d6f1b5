"""The outbox on PostgreSQL: writing rows inside a change, and leasing them across replicas.

Claiming is one ``sr_claim_outbox`` call: ``FOR UPDATE SKIP LOCKED`` hands each due row to
one replica, which holds it by lease (``lease_owner``, ``lease_until``) while it sends and
renews the lease (``sr_renew_outbox_leases``) while the row waits. A replica that dies keeps
its rows only until the lease runs out; then another claims them. Results are written back
under each row's own tenant, and only while the writer still holds the row's lease.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from staterelay.core.records import (
    DeliveryOutcome,
    NewActivity,
    NewOutboxEvent,
    OutboxItem,
    OutboxStats,
)
from staterelay.store.postgres_engine import PostgresEngine, bind_tenant, clean_text, rowcount
from staterelay.store.sqlite_outbox import new_event_id

if TYPE_CHECKING:
    from staterelay.store.postgres_engine import Connection

    FanOut: TypeAlias = Callable[[Connection, str, NewOutboxEvent, float], Awaitable[int]]
    """Writes the outbox rows one sink owes for an event, inside the change's transaction."""

CLAIM_PER_DESTINATION = 25

# A fresh id per row written by INSERT ... SELECT: the same shape as ``new_event_id``.
SQL_EVENT_ID = "'msg_' || replace(gen_random_uuid()::text, '-', '')"

# Inserts one row: $1 tenant, $2 sink, $3 destination, $4 ordering key, $5 event id,
# $6 event type, $7 device, $8 payload, $9 mergeable, $10 due, $11 now. A row is never due
# before the rows of its key ahead of it: while one of them waits for a retry, this one
# waits as long, so the claim does not look at it meanwhile.
HEAD_DUE = (
    "(SELECT max(h.next_attempt_at) FROM outbox h WHERE h.ordering_key = {key}"
    " AND h.status = 'pending')"
)
INSERT_OUTBOX_ROW = (
    "INSERT INTO outbox (tenant_id, sink, destination, ordering_key, event_id, event_type,"
    " device_id, payload, mergeable, next_attempt_at, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
    f" greatest($10, coalesce({HEAD_DUE.format(key='$4')}, 0)), $11)"
)
# The key's newest pending row, locked, if a change may still merge into it (see
# ``mergeable_tail``); a row being claimed right now is skipped, so nothing merges into it.
_MERGEABLE_TAIL = (
    "SELECT o.id FROM outbox o WHERE o.id = ("
    " SELECT t.id FROM outbox t WHERE t.tenant_id = $1 AND t.ordering_key = $2"
    " AND t.status = 'pending' ORDER BY t.id DESC LIMIT 1)"
    " AND o.mergeable AND o.attempts = 0 AND o.lease_owner IS NULL AND o.status = 'pending'"
    " FOR UPDATE SKIP LOCKED"
)


async def insert_outbox_row(
    conn: Connection,
    tenant_id: str,
    sink: str,
    destination: str,
    event: NewOutboxEvent,
    now: float,
    *,
    ordering_key: str,
    mergeable: bool = False,
    due_at: float | None = None,
) -> None:
    """Queue ``event`` for one destination of one sink, due at once (or at ``due_at``)."""
    await conn.execute(
        INSERT_OUTBOX_ROW,
        tenant_id,
        sink,
        destination,
        ordering_key,
        new_event_id(),
        event.event_type,
        event.device_id,
        dict(event.payload),
        mergeable,
        now if due_at is None else due_at,
        now,
    )


async def mergeable_tail(conn: Connection, tenant_id: str, ordering_key: str) -> int | None:
    """The id of the key's newest pending row, locked, if a change may be merged into it.

    Only the tail qualifies (so a merged report never jumps ahead of a row behind it), and
    only while no one has picked it up: mergeable, untried, not leased, not being claimed.
    The lock holds until the change commits, so the row cannot be claimed (and its device
    read) before the change it now stands for is visible.
    """
    found = await conn.fetchval(_MERGEABLE_TAIL, tenant_id, ordering_key)
    return None if found is None else int(found)


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


def outbox_item(row: asyncpg.Record) -> OutboxItem:
    """An ``OutboxItem`` from an outbox row."""
    return OutboxItem(
        id=row["id"],
        tenant_id=row["tenant_id"],
        sink=row["sink"],
        destination=row["destination"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        device_id=row["device_id"],
        payload=row["payload"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        ordering_key=row["ordering_key"],
        mergeable=row["mergeable"],
    )


class PostgresOutbox:
    """The outbox part of ``Store`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    async def claim_outbox(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> Sequence[OutboxItem]:
        """Lease due rows; a row locked or leased by another replica is skipped."""
        async with self.engine.instance() as conn:
            rows = await conn.fetch(
                "SELECT * FROM sr_claim_outbox($1, $2, $3, $4, $5)",
                owner,
                now,
                now + lease_seconds,
                CLAIM_PER_DESTINATION,
                limit,
            )
        return sorted((outbox_item(row) for row in rows), key=lambda item: item.id)

    async def renew_outbox_leases(
        self, owner: str, ids: Sequence[int], lease_until: float
    ) -> set[int]:
        """Extend the leases ``owner`` still holds, across tenants; returns their ids."""
        if not ids:
            return set()
        async with self.engine.instance() as conn:
            rows = await conn.fetch(
                "SELECT * FROM sr_renew_outbox_leases($1, $2, $3)", owner, list(ids), lease_until
            )
        return {int(row[0]) for row in rows}

    async def record_deliveries(
        self, outcomes: Sequence[DeliveryOutcome], now: float, *, owner: str
    ) -> set[int]:
        """Write the results of rows still leased to ``owner``, each under its row's tenant,
        in one transaction; returns the ids written."""
        if not outcomes:
            return set()
        recorded: set[int] = set()
        ordered = sorted(outcomes, key=lambda outcome: outcome.item.tenant_id)
        async with self.engine.instance() as conn:
            for tenant_id, group in groupby(ordered, key=lambda outcome: outcome.item.tenant_id):
                await bind_tenant(conn, tenant_id)
                for outcome in group:
                    if await _record(conn, outcome, now, owner):
                        recorded.add(outcome.item.id)
        return recorded

    async def release_leases(self, owner: str | None) -> int:
        """Free one owner's leases; with None only leases that ran out (others are alive)."""
        async with self.engine.instance() as conn:
            return int(await conn.fetchval("SELECT sr_release_leases($1, $2)", owner, time.time()))

    async def next_outbox_due(self) -> float | None:
        """When the earliest pending row becomes due (or its lease runs out)."""
        async with self.engine.instance(readonly=True) as conn:
            due = await conn.fetchval("SELECT sr_outbox_next_due()")
        return None if due is None else float(due)

    async def outbox_stats(self) -> OutboxStats:
        """Pending and dead counts and the oldest pending row's age, across tenants."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow("SELECT * FROM sr_outbox_stats()")
        assert row is not None
        return OutboxStats(
            pending=int(row["pending"]),
            dead=int(row["dead"]),
            oldest_pending_at=row["oldest_pending_at"],
        )


async def _record(conn: Connection, outcome: DeliveryOutcome, now: float, owner: str) -> bool:
    """Write one result unless another owner holds the row now; False when one does.

    A row deleted meanwhile (its webhook was disabled or removed) still gets its history and
    activity: the attempt happened and nobody else will report it.
    """
    item = outcome.item
    status = outcome.status
    error = clean_text(outcome.error)
    updated = await conn.execute(
        "UPDATE outbox SET status = $1, attempts = attempts + $2,"
        " next_attempt_at = coalesce($3, next_attempt_at), lease_owner = NULL,"
        " lease_until = NULL, last_error = $4, merged_into = $5, finished_at = $6"
        " WHERE id = $7 AND lease_owner = $8",
        status,
        0 if outcome.merged_into is not None else 1,
        outcome.next_attempt_at,
        error,
        outcome.merged_into,
        None if status == "pending" else now,
        item.id,
        owner,
    )
    if not rowcount(updated) and await conn.fetchval("SELECT 1 FROM outbox WHERE id = $1", item.id):
        return False  # the lease was lost: the row's new owner records it
    if outcome.next_attempt_at is not None:
        # The rows behind it wait for its retry (never due before it).
        await conn.execute(
            "UPDATE outbox SET next_attempt_at = $1 WHERE tenant_id = $2 AND ordering_key = $3"
            " AND status = 'pending' AND id > $4 AND next_attempt_at < $1",
            outcome.next_attempt_at,
            item.tenant_id,
            item.ordering_key,
            item.id,
        )
    if item.sink == "webhook" and outcome.merged_into is None:
        # History only for a webhook that still exists (it may have been deleted meanwhile).
        await conn.execute(
            "INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id, event_type,"
            " attempt, status_code, error, duration_ms, created_at)"
            " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS ("
            "  SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2)",
            item.tenant_id,
            item.destination,
            item.event_id,
            item.event_type,
            item.attempts + 1,
            outcome.status_code,
            error,
            outcome.duration_ms,
            now,
        )
    if outcome.activity is not None:
        await insert_activity_row(conn, item.tenant_id, outcome.activity, now)
    return True
