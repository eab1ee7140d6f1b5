"""The activity log on SQLite: writing an entry (changes and deliveries both do)."""

from __future__ import annotations

import sqlite3

from staterelay.core.records import ActivityEntry, NewActivity
from staterelay.jsoncodec import encode_sorted_text


def insert_activity(
    conn: sqlite3.Connection, tenant_id: str, activity: NewActivity, at: float
) -> ActivityEntry:
    """Insert one activity row; returns it as stored."""
    detail = dict(activity.detail or {})
    cursor = conn.execute(
        "INSERT INTO activity_log (tenant_id, device_id, device_name, kind, source, actor, cause,"
        " property, old_value, new_value, detail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            tenant_id,
            activity.device_id,
            activity.device_name,
            activity.kind,
            activity.source,
            activity.actor,
            activity.cause,
            activity.property,
            None if activity.old_value is None else encode_sorted_text(activity.old_value),
            None if activity.new_value is None else encode_sorted_text(activity.new_value),
            encode_sorted_text(detail) if detail else "{}",  # a state change has no detail
            at,
        ),
    )
    return activity.stored(entry_id=int(cursor.lastrowid or 0), tenant_id=tenant_id, at=at)
