"""The IFTTT aggregate on SQLite: timelines, thresholds, trigger identities, request ids.

Timeline events and Realtime rows are written by the change's delivery plan
(``store/sqlite/delivery.py``); this module reads timelines, tracks thresholds (backfilling
their crossings from recorded readings), keeps identities and prunes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from staterelay.core.delivery import ifttt_key
from staterelay.core.records.ifttt import (
    SENSOR_KIND,
    IftttEvent,
    IftttPruned,
    Threshold,
    TriggerIdentity,
)
from staterelay.jsoncodec import decode, encode_sorted_text
from staterelay.store.sqlite.delivery import insert_timeline_event
from staterelay.store.sqlite.engine import SQLiteEngine

BACKFILL_MAX = 100  # crossings a newly tracked threshold gets from recorded readings

_EVENT_COLUMNS = (
    "id, uid, tenant_id, device_id, device_name, kind, variant, property, old_value,"
    " new_value, cause, source, occurred_at"
)
_IDENTITY_COLUMNS = (
    "tenant_id, user_id, identity, trigger_slug, fields, device_id, kind, direction, threshold,"
    " created_at, last_polled_at, deleted_at"
)


class SQLiteIfttt:
    """``IftttStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

    async def configure_ifttt_realtime(
        self, *, enabled: bool, debounce_seconds: float, now: float
    ) -> None:
        """Store the Realtime switch and window for every process's fan-out."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO ifttt_realtime (id, enabled, debounce_seconds, updated_at)"
                " VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled,"
                " debounce_seconds = excluded.debounce_seconds, updated_at = excluded.updated_at",
                (int(enabled), debounce_seconds, now),
            )

        await self.engine.write(write)

    async def list_ifttt_events(
        self, tenant_id: str, device_id: str, kind: str, variant: str, *, limit: int
    ) -> Sequence[IftttEvent]:
        """One timeline, newest first."""
        if limit <= 0:
            return []

        def read(conn: sqlite3.Connection) -> list[IftttEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM ifttt_events WHERE tenant_id = ? AND device_id = ?"
                " AND kind = ? AND variant = ? ORDER BY id DESC LIMIT ?",
                (tenant_id, device_id, kind, variant, limit),
            ).fetchall()
            return [_event(row) for row in rows]

        return await self.engine.read_statement(read)

    async def track_ifttt_threshold(
        self, tenant_id: str, device_id: str, threshold: Threshold, now: float, *, limit: int
    ) -> int | None:
        """Track a threshold; backfill its crossings when it is new (None: over ``limit``)."""

        def write(conn: sqlite3.Connection) -> int | None:
            updated = conn.execute(
                "UPDATE ifttt_thresholds SET last_polled_at = max(last_polled_at, ?)"
                " WHERE tenant_id = ? AND device_id = ? AND variant = ?",
                (now, tenant_id, device_id, threshold.variant),
            ).rowcount
            if updated:
                return 0
            (tracked,) = conn.execute(
                "SELECT count(*) FROM ifttt_thresholds WHERE tenant_id = ? AND device_id = ?",
                (tenant_id, device_id),
            ).fetchone()
            if tracked >= limit:
                return None
            conn.execute(
                "INSERT INTO ifttt_thresholds (tenant_id, device_id, variant, direction,"
                " threshold, created_at, last_polled_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant_id,
                    device_id,
                    threshold.variant,
                    threshold.direction,
                    threshold.value,
                    now,
                    now,
                ),
            )
            return _backfill_crossings(conn, tenant_id, device_id, threshold)

        return await self.engine.write(write)

    async def save_ifttt_identity(self, identity: TriggerIdentity) -> None:
        """Upsert an identity."""
        threshold = identity.threshold

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO ifttt_trigger_identities ({_IDENTITY_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
                " ON CONFLICT (tenant_id, user_id, identity) DO UPDATE SET"
                " trigger_slug = excluded.trigger_slug, fields = excluded.fields,"
                " device_id = excluded.device_id, kind = excluded.kind,"
                " direction = excluded.direction, threshold = excluded.threshold,"
                " last_polled_at = max(last_polled_at, excluded.last_polled_at),"
                " deleted_at = NULL",
                (
                    identity.tenant_id,
                    identity.user_id,
                    identity.identity,
                    identity.trigger,
                    encode_sorted_text(dict(identity.fields)),
                    identity.device_id,
                    identity.kind,
                    threshold.direction if threshold else None,
                    threshold.value if threshold else None,
                    identity.created_at,
                    identity.last_polled_at,
                ),
            )

        await self.engine.write(write)

    async def delete_ifttt_identity(
        self, tenant_id: str, user_id: str, identity: str, now: float
    ) -> bool:
        """Soft-delete an identity."""

        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE ifttt_trigger_identities SET deleted_at = ? WHERE tenant_id = ?"
                    " AND user_id = ? AND identity = ? AND deleted_at IS NULL",
                    (now, tenant_id, user_id, identity),
                ).rowcount
                == 1
            )

        return await self.engine.write(write)

    async def forget_ifttt_user(self, tenant_id: str, user_id: str, now: float) -> int:
        """Mark the user's identities deleted and drop their queued Realtime rows."""

        def write(conn: sqlite3.Connection) -> int:
            forgotten = conn.execute(
                "UPDATE ifttt_trigger_identities SET deleted_at = ?"
                " WHERE tenant_id = ? AND user_id = ? AND deleted_at IS NULL",
                (now, tenant_id, user_id),
            ).rowcount
            conn.execute(
                "DELETE FROM outbox WHERE ordering_key = ? AND status = 'pending'"
                " AND tenant_id = ?",
                (ifttt_key(user_id), tenant_id),
            )
            return int(forgotten)

        return await self.engine.write(write)

    async def list_ifttt_identities(
        self, tenant_id: str, user_id: str | None = None
    ) -> Sequence[TriggerIdentity]:
        """Identities of a tenant or user, oldest first."""
        sql = f"SELECT {_IDENTITY_COLUMNS} FROM ifttt_trigger_identities WHERE tenant_id = ?"
        params: tuple[str, ...] = (tenant_id,)
        if user_id is not None:
            sql += " AND user_id = ?"
            params = (tenant_id, user_id)
        sql += " ORDER BY created_at, rowid"

        def read(conn: sqlite3.Connection) -> list[TriggerIdentity]:
            return [_identity(row) for row in conn.execute(sql, params).fetchall()]

        return await self.engine.read_statement(read)

    async def find_ifttt_action(
        self, tenant_id: str, user_id: str, action: str, request_id: str
    ) -> str | None:
        """The stored result of an action request."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT result FROM ifttt_action_requests WHERE tenant_id = ? AND user_id = ?"
                " AND action_slug = ? AND request_id = ?",
                (tenant_id, user_id, action, request_id),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.engine.read_statement(read)

    async def record_ifttt_action(
        self, tenant_id: str, user_id: str, action: str, request_id: str, result: str, now: float
    ) -> None:
        """Remember an action request's result (the first one stays)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO ifttt_action_requests (tenant_id, user_id, action_slug, request_id,"
                " result, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (tenant_id, user_id, action, request_id, result, now),
            )

        await self.engine.write(write)

    async def prune_ifttt(
        self,
        *,
        events_before: float,
        keep_events: int,
        identities_before: float,
        requests_before: float,
    ) -> IftttPruned:
        """Delete what is older than the given times, keeping each timeline's newest events."""

        def write(conn: sqlite3.Connection) -> IftttPruned:
            # Newest by id (a backfilled crossing carries an older time than its id says).
            events = conn.execute(
                "DELETE FROM ifttt_events WHERE id IN (SELECT id FROM ("
                " SELECT id, occurred_at, row_number() OVER (PARTITION BY tenant_id,"
                "  device_id, kind, variant ORDER BY id DESC) AS place FROM ifttt_events)"
                " WHERE place > ? AND occurred_at < ?)",
                (keep_events, events_before),
            ).rowcount
            identities = conn.execute(
                "DELETE FROM ifttt_trigger_identities WHERE last_polled_at < ? OR deleted_at < ?",
                (identities_before, identities_before),
            ).rowcount
            thresholds = conn.execute(
                "DELETE FROM ifttt_thresholds WHERE last_polled_at < ?", (identities_before,)
            ).rowcount
            requests = conn.execute(
                "DELETE FROM ifttt_action_requests WHERE created_at < ?", (requests_before,)
            ).rowcount
            return IftttPruned(
                events=int(events),
                identities=int(identities),
                thresholds=int(thresholds),
                requests=int(requests),
            )

        return await self.engine.write(write)


def _backfill_crossings(
    conn: sqlite3.Connection, tenant_id: str, device_id: str, threshold: Threshold
) -> int:
    """Write the crossings of recorded readings newer than the timeline's newest crossing."""
    variant = threshold.variant
    last = conn.execute(
        "SELECT source_id FROM ifttt_events WHERE tenant_id = ? AND device_id = ? AND kind = ?"
        " AND variant = ? ORDER BY id DESC LIMIT 1",
        (tenant_id, device_id, SENSOR_KIND, variant),
    ).fetchone()
    after = int(last[0] or 0) if last else 0
    found: list[tuple[Any, ...]] = []
    for row in conn.execute(
        "SELECT id, uid, tenant_id, device_id, device_name, kind, property, old_value, new_value,"
        " old_number, new_number, cause, source, occurred_at FROM ifttt_events"
        " WHERE tenant_id = ? AND device_id = ? AND kind = ? AND variant = '' AND id > ?"
        " ORDER BY id DESC",
        (tenant_id, device_id, SENSOR_KIND, after),
    ):
        if threshold.crossed(row[9], row[10]):
            found.append(row)
            if len(found) >= BACKFILL_MAX:
                break
    for row in reversed(found):
        insert_timeline_event(conn, f"{row[1]}-{variant}", variant, row[0], row[2:])
    return len(found)


def _threshold(direction: str, value: Any) -> Threshold:
    return Threshold("above" if direction == "above" else "below", float(value))


_SCALARS: dict[str, Any] = {}
_SCALARS_MAX = 4096


def _value(text: str | None) -> Any:
    """A stored JSON value; the few scalars a timeline repeats (ON, 75) are decoded once."""
    if text is None:
        return None
    try:
        return _SCALARS[text]
    except KeyError:
        value = decode(text)
    if not isinstance(value, dict | list) and len(_SCALARS) < _SCALARS_MAX:
        _SCALARS[text] = value
    return value


def _event(row: tuple[Any, ...]) -> IftttEvent:
    return IftttEvent(
        id=row[0],
        uid=row[1],
        tenant_id=row[2],
        device_id=row[3],
        device_name=row[4],
        kind=row[5],
        variant=row[6],
        property=row[7],
        old_value=_value(row[8]),
        new_value=_value(row[9]),
        cause=row[10],
        source=row[11],
        occurred_at=row[12],
    )


def _identity(row: tuple[Any, ...]) -> TriggerIdentity:
    return TriggerIdentity(
        tenant_id=row[0],
        user_id=row[1],
        identity=row[2],
        trigger=row[3],
        fields=decode(row[4]),
        device_id=row[5],
        kind=row[6],
        threshold=None if row[7] is None else _threshold(row[7], row[8]),
        created_at=row[9],
        last_polled_at=row[10],
        deleted_at=row[11],
    )
