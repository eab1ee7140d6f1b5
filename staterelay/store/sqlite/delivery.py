"""Delivery on SQLite: a household's interest facts, and applying a delivery plan.

Both run inside the change's write transaction. The rules (who hears of what, what may
merge) are core's; these are the mechanisms: read the facts (remembered per household
until its ``interest_version`` moves, which triggers on the tables behind the facts do),
insert or merge outbox rows, append IFTTT timeline events.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from staterelay.core.delivery import (
    DeliveryPlan,
    IftttWatch,
    InterestFacts,
    PlannedRow,
    TimelineEvent,
    WebhookInterest,
)
from staterelay.core.records.ifttt import DEFAULT_DEBOUNCE_SECONDS, Threshold
from staterelay.core.records.integrations import LINK_KIND
from staterelay.jsoncodec import decode, encode_sorted_text
from staterelay.store.sqlite.outbox import insert_outbox_row, merge_into_tail, uuid4_hex

# Whether a household uses IFTTT's service: a live grant of the IFTTT client, or trigger
# identities IFTTT made (a client linked without the preset). Only then are timelines kept.
_IFTTT_LINKED = (
    "SELECT EXISTS (SELECT 1 FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id"
    "  WHERE g.tenant_id = ? AND g.revoked_at IS NULL"
    "  AND (' ' || g.scopes || ' ' LIKE '% ifttt %' OR c.redirect_uris LIKE '%://ifttt.com/%'))"
    " OR EXISTS (SELECT 1 FROM ifttt_trigger_identities WHERE tenant_id = ?)"
)


class InterestCache:
    """Each household's facts, kept while its ``interest_version`` stays the same."""

    def __init__(self) -> None:
        self._facts: dict[str, InterestFacts] = {}

    def clear(self) -> None:
        """Forget everything (the instance's Realtime settings changed)."""
        self._facts.clear()

    def facts(self, conn: sqlite3.Connection, tenant_id: str) -> InterestFacts:
        """The household's facts, read again only when they changed."""
        row = conn.execute(
            "SELECT interest_version FROM tenants WHERE id = ?", (tenant_id,)
        ).fetchone()
        version = int(row[0]) if row is not None else 0
        known = self._facts.get(tenant_id)
        if known is not None and known.version == version:
            return known
        facts = load_facts(conn, tenant_id, version)
        if len(self._facts) > 4096:
            self._facts.clear()
        self._facts[tenant_id] = facts
        return facts


def load_facts(conn: sqlite3.Connection, tenant_id: str, version: int) -> InterestFacts:
    """Read a household's interest facts (a few indexed queries)."""
    grants = tuple(
        row[0]
        for row in conn.execute(
            "SELECT id FROM alexa_grants WHERE tenant_id = ? AND status = 'active' ORDER BY id",
            (tenant_id,),
        )
    )
    webhooks = tuple(
        WebhookInterest(
            webhook_id=row[0],
            event_types=None if row[1] is None else frozenset(decode(row[1])),
            device_ids=None if row[2] is None else frozenset(decode(row[2])),
        )
        for row in conn.execute(
            "SELECT id, event_types, device_ids FROM webhooks WHERE tenant_id = ? AND enabled = 1"
            " ORDER BY seq",
            (tenant_id,),
        )
    )
    linked = bool(conn.execute(_IFTTT_LINKED, (tenant_id, tenant_id)).fetchone()[0])
    watches: tuple[IftttWatch, ...] = ()
    thresholds: dict[str, tuple[Threshold, ...]] = {}
    if linked:
        watches = tuple(
            IftttWatch(
                user_id=row[0],
                identity=row[1],
                device_id=row[2],
                kind=row[3],
                threshold=None if row[4] is None else _threshold(row[4], row[5]),
            )
            for row in conn.execute(
                "SELECT user_id, identity, device_id, kind, direction, threshold"
                " FROM ifttt_trigger_identities WHERE tenant_id = ? AND deleted_at IS NULL"
                " ORDER BY identity",
                (tenant_id,),
            )
        )
        for device_id, direction, value in conn.execute(
            "SELECT device_id, direction, threshold FROM ifttt_thresholds WHERE tenant_id = ?"
            " ORDER BY device_id, variant",
            (tenant_id,),
        ):
            thresholds[device_id] = (*thresholds.get(device_id, ()), _threshold(direction, value))
    config = conn.execute(
        "SELECT enabled, debounce_seconds FROM ifttt_realtime WHERE id = 1"
    ).fetchone()
    links: dict[str, tuple[str, ...]] = {}
    for integration, key in conn.execute(
        "SELECT integration, key FROM integration_records WHERE tenant_id = ? AND kind = ?"
        " ORDER BY integration, key",
        (tenant_id, LINK_KIND),
    ):
        links[integration] = (*links.get(integration, ()), key)
    return InterestFacts(
        version=version,
        alexa_grants=grants,
        webhooks=webhooks,
        ifttt_linked=linked,
        ifttt_watches=watches,
        thresholds=thresholds,
        realtime_enabled=config is None or bool(config[0]),
        realtime_debounce=DEFAULT_DEBOUNCE_SECONDS if config is None else float(config[1]),
        links=links,
    )


def apply_plan(conn: sqlite3.Connection, tenant_id: str, plan: DeliveryPlan, now: float) -> int:
    """Write the plan's timeline events and outbox rows; returns the rows added."""
    for event in plan.timeline:
        _append_timeline(conn, tenant_id, event, now)
    return sum(_queue(conn, tenant_id, row, now) for row in plan.rows)


def _queue(conn: sqlite3.Connection, tenant_id: str, row: PlannedRow, now: float) -> int:
    """Merge ``row`` into a queued row as its ``merge`` allows, or add it; 1 when added."""
    payload: Mapping[str, Any] = row.payload
    merge = row.merge
    if merge is not None and merge.kind == "tail":
        # A row merged into is covered only once a report has told Alexa this version.
        if merge_into_tail(conn, row.ordering_key, merge.version):
            return 0
    elif merge is not None and merge.kind == "waiting":
        waiting = conn.execute(
            "SELECT o.id, o.payload FROM outbox o WHERE o.ordering_key = ?"
            " AND o.status = 'pending' AND o.device_id = ? AND o.next_attempt_at > ?"
            " AND o.attempts = 0 AND NOT EXISTS ("
            "  SELECT 1 FROM temp.outbox_leases l WHERE l.id = o.id)"
            " ORDER BY o.id DESC LIMIT 1",
            (row.ordering_key, row.device_id, now),
        ).fetchone()
        if waiting is not None:
            queued = decode(waiting[1])
            have: list[str] = list(queued.get("trigger_identities") or ())
            new = [identity for identity in merge.identities if identity not in have]
            if not new:
                return 0
            if len(have) + len(new) <= merge.limit:
                queued["trigger_identities"] = have + new
                conn.execute(
                    "UPDATE outbox SET payload = ? WHERE id = ?",
                    (encode_sorted_text(queued), waiting[0]),
                )
                return 0
            payload = {**row.payload, "trigger_identities": new}
    insert_outbox_row(
        conn,
        tenant_id,
        row.sink,
        row.destination,
        row.event_type,
        row.device_id,
        payload,
        now,
        ordering_key=row.ordering_key,
        mergeable=row.mergeable,
        due_at=row.due_at,
    )
    return 1


def _append_timeline(
    conn: sqlite3.Connection, tenant_id: str, event: TimelineEvent, now: float
) -> None:
    uid = uuid4_hex()
    values = (
        tenant_id,
        event.device_id,
        event.device_name,
        event.kind,
        event.property,
        None if event.old is None else encode_sorted_text(event.old),
        None if event.new is None else encode_sorted_text(event.new),
        event.old_number,
        event.new_number,
        event.cause,
        event.source,
        now,
    )
    source_id = insert_timeline_event(conn, uid, "", None, values)
    for variant in event.crossed:
        insert_timeline_event(conn, f"{uid}-{variant}", variant, source_id, values)


def insert_timeline_event(
    conn: sqlite3.Connection,
    uid: str,
    variant: str,
    source_id: int | None,
    values: tuple[Any, ...],
) -> int:
    """One ``ifttt_events`` row; returns its id."""
    cursor = conn.execute(
        "INSERT INTO ifttt_events (uid, variant, source_id, tenant_id, device_id, device_name,"
        " kind, property, old_value, new_value, old_number, new_number, cause, source,"
        " occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (uid, variant, source_id, *values),
    )
    return int(cursor.lastrowid or 0)


def _threshold(direction: str, value: Any) -> Threshold:
    return Threshold("above" if direction == "above" else "below", float(value))
