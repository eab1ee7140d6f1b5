"""PostgreSQL implementation of the IFTTT part of the store, and the IFTTT fan-out.

The same design as ``store.sqlite.ifttt`` (timelines written inside the change's transaction,
Realtime rows coalesced per device and debounce window). Where SQLite relies on its single
writer, this relies on the device's row lock that every change holds: changes of one device
run one after another, and tracking a new threshold waits for the change in progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from staterelay.core.delivery import ifttt_key
from staterelay.core.records.ifttt import (
    SENSOR_KIND,
    IftttEvent,
    IftttPruned,
    Threshold,
    TriggerIdentity,
)
from staterelay.store.postgres.engine import PostgresEngine, rowcount

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

BACKFILL_MAX = 100  # crossings a newly tracked threshold gets from recorded readings

_EVENT_COLUMNS = (
    "id, uid, tenant_id, device_id, device_name, kind, variant, property, old_value,"
    " new_value, cause, source, occurred_at"
)
_IDENTITY_COLUMNS = (
    "tenant_id, user_id, identity, trigger_slug, fields, device_id, kind, direction, threshold,"
    " created_at, last_polled_at, deleted_at"
)
# Everything of an event row but its uid, variant and source_id, in _insert_event's order.
_EVENT_BODY = (
    "tenant_id, device_id, device_name, kind, property, old_value, new_value, old_number,"
    " new_number, cause, source, occurred_at"
)


class PostgresIfttt:
    """``IftttStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    async def configure_ifttt_realtime(
        self, *, enabled: bool, debounce_seconds: float, now: float
    ) -> None:
        """Store the Realtime switch and window; every replica's facts move with it."""
        async with self.engine.instance() as conn:
            await conn.execute(
                "INSERT INTO ifttt_realtime (id, enabled, debounce_seconds, updated_at)"
                " VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET"
                " enabled = excluded.enabled, debounce_seconds = excluded.debounce_seconds,"
                " updated_at = excluded.updated_at, generation = ifttt_realtime.generation + 1",
                enabled,
                debounce_seconds,
                now,
            )

    async def list_ifttt_events(
        self, tenant_id: str, device_id: str, kind: str, variant: str, *, limit: int
    ) -> Sequence[IftttEvent]:
        """One timeline, newest first."""
        if limit <= 0:
            return []
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM ifttt_events WHERE tenant_id = $1"
                " AND device_id = $2 AND kind = $3 AND variant = $4 ORDER BY id DESC LIMIT $5",
                tenant_id,
                device_id,
                kind,
                variant,
                limit,
            )
        return [IftttEvent(*row) for row in rows]

    async def track_ifttt_threshold(
        self, tenant_id: str, device_id: str, threshold: Threshold, now: float, *, limit: int
    ) -> int | None:
        """Track a threshold; backfill its crossings when it is new (None: over ``limit``)."""
        async with self.engine.tenant(tenant_id) as conn:
            # Wait for a change of the device in progress, and hold off the next one, so a
            # reading is either backfilled here or crossed by its own fan-out: never neither.
            await conn.execute(
                "SELECT 1 FROM devices WHERE tenant_id = $1 AND id = $2 FOR SHARE",
                tenant_id,
                device_id,
            )
            updated = await conn.execute(
                "UPDATE ifttt_thresholds SET last_polled_at = greatest(last_polled_at, $1)"
                " WHERE tenant_id = $2 AND device_id = $3 AND variant = $4",
                now,
                tenant_id,
                device_id,
                threshold.variant,
            )
            if rowcount(updated):
                return 0
            tracked = await conn.fetchval(
                "SELECT count(*) FROM ifttt_thresholds WHERE tenant_id = $1 AND device_id = $2",
                tenant_id,
                device_id,
            )
            if tracked >= limit:
                return None
            await conn.execute(
                "INSERT INTO ifttt_thresholds (tenant_id, device_id, variant, direction,"
                " threshold, created_at, last_polled_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                tenant_id,
                device_id,
                threshold.variant,
                threshold.direction,
                threshold.value,
                now,
            )
            return await _backfill_crossings(conn, tenant_id, device_id, threshold)

    async def save_ifttt_identity(self, identity: TriggerIdentity) -> None:
        """Upsert an identity."""
        threshold = identity.threshold
        async with self.engine.tenant(identity.tenant_id) as conn:
            await conn.execute(
                f"INSERT INTO ifttt_trigger_identities ({_IDENTITY_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)"
                " ON CONFLICT (tenant_id, user_id, identity) DO UPDATE SET"
                " trigger_slug = excluded.trigger_slug, fields = excluded.fields,"
                " device_id = excluded.device_id, kind = excluded.kind,"
                " direction = excluded.direction, threshold = excluded.threshold,"
                " last_polled_at = greatest(ifttt_trigger_identities.last_polled_at,"
                " excluded.last_polled_at), deleted_at = NULL",
                identity.tenant_id,
                identity.user_id,
                identity.identity,
                identity.trigger,
                dict(identity.fields),
                identity.device_id,
                identity.kind,
                threshold.direction if threshold else None,
                threshold.value if threshold else None,
                identity.created_at,
                identity.last_polled_at,
            )

    async def delete_ifttt_identity(
        self, tenant_id: str, user_id: str, identity: str, now: float
    ) -> bool:
        """Soft-delete an identity."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE ifttt_trigger_identities SET deleted_at = $1 WHERE tenant_id = $2"
                " AND user_id = $3 AND identity = $4 AND deleted_at IS NULL",
                now,
                tenant_id,
                user_id,
                identity,
            )
        return rowcount(status) == 1

    async def forget_ifttt_user(self, tenant_id: str, user_id: str, now: float) -> int:
        """Mark the user's identities deleted and drop their queued Realtime rows."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE ifttt_trigger_identities SET deleted_at = $1"
                " WHERE tenant_id = $2 AND user_id = $3 AND deleted_at IS NULL",
                now,
                tenant_id,
                user_id,
            )
            await conn.execute(
                "DELETE FROM outbox WHERE tenant_id = $1 AND ordering_key = $2"
                " AND status = 'pending'",
                tenant_id,
                ifttt_key(user_id),
            )
        return rowcount(status)

    async def list_ifttt_identities(
        self, tenant_id: str, user_id: str | None = None
    ) -> Sequence[TriggerIdentity]:
        """Identities of a tenant or user, oldest first."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_IDENTITY_COLUMNS} FROM ifttt_trigger_identities WHERE tenant_id = $1"
                " AND ($2::text IS NULL OR user_id = $2) ORDER BY created_at, seq",
                tenant_id,
                user_id,
            )
        return [_identity(row) for row in rows]

    async def find_ifttt_action(
        self, tenant_id: str, user_id: str, action: str, request_id: str
    ) -> str | None:
        """The stored result of an action request."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            result = await conn.fetchval(
                "SELECT result FROM ifttt_action_requests WHERE tenant_id = $1"
                " AND user_id = $2 AND action_slug = $3 AND request_id = $4",
                tenant_id,
                user_id,
                action,
                request_id,
            )
        return None if result is None else str(result)

    async def record_ifttt_action(
        self, tenant_id: str, user_id: str, action: str, request_id: str, result: str, now: float
    ) -> None:
        """Remember an action request's result (the first one stays)."""
        async with self.engine.tenant(tenant_id) as conn:
            await conn.execute(
                "INSERT INTO ifttt_action_requests (tenant_id, user_id, action_slug, request_id,"
                " result, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                tenant_id,
                user_id,
                action,
                request_id,
                result,
                now,
            )

    async def prune_ifttt(
        self,
        *,
        events_before: float,
        keep_events: int,
        identities_before: float,
        requests_before: float,
    ) -> IftttPruned:
        """Delete what is older than the given times, in every tenant, keeping each
        timeline's newest events."""
        async with self.engine.instance() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM sr_prune_ifttt($1, $2, $3, $4)",
                events_before,
                keep_events,
                identities_before,
                requests_before,
            )
        assert row is not None
        return IftttPruned(
            events=int(row["events"]),
            identities=int(row["identities"]),
            thresholds=int(row["thresholds"]),
            requests=int(row["requests"]),
        )


# the fan-out ---------------------------------------------------------------------------------


async def _insert_event(
    conn: Connection,
    uid: str,
    variant: str,
    source_id: int | None,
    body: Sequence[Any],
) -> int:
    event_id = await conn.fetchval(
        f"INSERT INTO ifttt_events (uid, variant, source_id, {_EVENT_BODY})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        " RETURNING id",
        uid,
        variant,
        source_id,
        *body,
    )
    return int(event_id)


async def _backfill_crossings(
    conn: Connection, tenant_id: str, device_id: str, threshold: Threshold
) -> int:
    """Write the crossings of recorded readings newer than the timeline's newest crossing."""
    variant = threshold.variant
    after = await conn.fetchval(
        "SELECT coalesce(source_id, 0) FROM ifttt_events WHERE tenant_id = $1"
        " AND device_id = $2 AND kind = $3 AND variant = $4 ORDER BY id DESC LIMIT 1",
        tenant_id,
        device_id,
        SENSOR_KIND,
        variant,
    )
    found: list[asyncpg.Record] = []
    # A cursor, so only the readings up to the BACKFILL_MAX-th crossing are fetched.
    async for row in conn.cursor(
        f"SELECT id, uid, {_EVENT_BODY} FROM ifttt_events WHERE tenant_id = $1"
        " AND device_id = $2 AND kind = $3 AND variant = '' AND id > $4 ORDER BY id DESC",
        tenant_id,
        device_id,
        SENSOR_KIND,
        after or 0,
    ):
        if threshold.crossed(row["old_number"], row["new_number"]):
            found.append(row)
            if len(found) >= BACKFILL_MAX:
                break
    for row in reversed(found):
        await _insert_event(conn, f"{row['uid']}-{variant}", variant, row["id"], tuple(row)[2:])
    return len(found)


def _threshold(direction: str, value: Any) -> Threshold:
    return Threshold("above" if direction == "above" else "below", float(value))


def _identity(row: asyncpg.Record) -> TriggerIdentity:
    return TriggerIdentity(
        tenant_id=row["tenant_id"],
        user_id=row["user_id"],
        identity=row["identity"],
        trigger=row["trigger_slug"],
        fields=row["fields"],
        device_id=row["device_id"],
        kind=row["kind"],
        threshold=None
        if row["direction"] is None
        else _threshold(row["direction"], row["threshold"]),
        created_at=row["created_at"],
        last_polled_at=row["last_polled_at"],
        deleted_at=row["deleted_at"],
    )
