"""Writing outbox rows: shared by every sink's fan-out on SQLite."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable

from staterelay.store.records import NewOutboxEvent

FanOut = Callable[[sqlite3.Connection, str, NewOutboxEvent, float], int]
"""Writes the outbox rows one sink owes for an event, inside the change's transaction."""


def new_event_id() -> str:
    """A fresh, globally unique message id (the ``webhook-id`` header, Alexa's messageId)."""
    return "msg_" + uuid.uuid4().hex


def insert_outbox_row(
    conn: sqlite3.Connection,
    tenant_id: str,
    sink: str,
    destination: str,
    event: NewOutboxEvent,
    now: float,
    *,
    due_at: float | None = None,
) -> None:
    """Queue ``event`` for one destination of one sink, due at once (or at ``due_at``)."""
    conn.execute(
        "INSERT INTO outbox (tenant_id, sink, destination, event_id, event_type, device_id,"
        " payload, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            tenant_id,
            sink,
            destination,
            new_event_id(),
            event.event_type,
            event.device_id,
            json.dumps(dict(event.payload), separators=(",", ":"), sort_keys=True),
            now if due_at is None else due_at,
            now,
        ),
    )
