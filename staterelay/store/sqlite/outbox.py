"""The outbox on SQLite: queueing rows, claiming them, recording what became of them.

One process delivers a SQLite database (the instance lock sees to it), so the leases it
takes live in a table of the writer connection's own memory (``temp.outbox_leases``): a
claim writes nothing to the database file, and a process that dies leaves no lease behind.
Results are written back in batches, one transaction each.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final

from staterelay.core.records import (
    DeliveryOutcome,
    OutboxClaim,
    OutboxItem,
    OutboxStats,
)
from staterelay.jsoncodec import decode, encode_sorted_text, encode_text
from staterelay.store.sqlite.activity import insert_activity
from staterelay.store.sqlite.engine import SQLiteEngine

CLAIM_PER_DESTINATION: Final = 25
LEASES: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS outbox_leases ("
    " id INTEGER PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL)"
)
_COLUMNS: Final = (
    "o.id, o.tenant_id, o.sink, o.destination, o.event_id, o.event_type, o.device_id,"
    " o.payload, o.attempts, o.created_at, o.ordering_key, o.mergeable"
)
_FREE: Final = (
    "NOT EXISTS (SELECT 1 FROM temp.outbox_leases l WHERE l.id = {row}.id AND l.until >= ?)"
)
# A row may be claimed when every older pending row of its key is mergeable with it, due
# and free (then they go together); this is the opposite, with ? for now, now.
_HELD_BACK: Final = (
    "EXISTS (SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key"
    " AND e.status = 'pending' AND e.id < o.id AND NOT (e.mergeable AND o.mergeable"
    f" AND e.next_attempt_at <= ? AND {_FREE.format(row='e')}))"
)
# For "when may the next row be claimed": a row waits on an older one that is not mergeable
# with it, or is being sent; that older row's own time counts instead.
_WAITING: Final = (
    "EXISTS (SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key"
    " AND e.status = 'pending' AND e.id < o.id AND NOT (e.mergeable AND o.mergeable"
    " AND NOT EXISTS (SELECT 1 FROM temp.outbox_leases l WHERE l.id = e.id)))"
)


def uuid4_hex() -> str:
    """``uuid.uuid4().hex``: the same 122 random bits and layout, in half the time.

    Two are made for every change (its outbox row and its IFTTT timeline entry); building
    a ``UUID`` object only to print it costs more than the randomness.
    """
    h = os.urandom(16).hex()
    return f"{h[:12]}4{h[13:16]}{'89ab'[int(h[16], 16) & 3]}{h[17:]}"


def new_event_id() -> str:
    """A fresh, globally unique message id (the ``webhook-id`` header, Alexa's messageId)."""
    return "msg_" + uuid4_hex()


def insert_outbox_row(
    conn: sqlite3.Connection,
    tenant_id: str,
    sink: str,
    destination: str,
    event_type: str,
    device_id: str | None,
    payload: Mapping[str, Any],
    now: float,
    *,
    ordering_key: str,
    mergeable: bool = False,
    due_at: float | None = None,
) -> None:
    """Queue an event for one destination of one sink, due at once (or at ``due_at``).

    A row is never due before the rows of its key ahead of it: while one of them waits for
    a retry, this one waits as long, so the dispatcher does not look at it meanwhile.
    """
    conn.execute(
        "INSERT INTO outbox (tenant_id, sink, destination, ordering_key, event_id, event_type,"
        " device_id, payload, mergeable, next_attempt_at, created_at) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, max(?, coalesce((SELECT max(h.next_attempt_at)"
        "  FROM outbox h WHERE h.ordering_key = ? AND h.status = 'pending'), 0)), ?)",
        (
            tenant_id,
            sink,
            destination,
            ordering_key,
            new_event_id(),
            event_type,
            device_id,
            encode_sorted_text(dict(payload)),
            int(mergeable),
            now if due_at is None else due_at,
            ordering_key,
            now,
        ),
    )


def mergeable_tail(conn: sqlite3.Connection, ordering_key: str) -> int | None:
    """The id of the key's newest pending row if a change may still be merged into it.

    Only the tail qualifies (so a merged report never jumps ahead of a row behind it), and
    only while no one has picked it up: it is mergeable, untried and not leased.
    """
    row = conn.execute(
        "SELECT o.id, o.mergeable, o.attempts, l.id FROM outbox o"
        " LEFT JOIN temp.outbox_leases l ON l.id = o.id"
        " WHERE o.ordering_key = ? AND o.status = 'pending' ORDER BY o.id DESC LIMIT 1",
        (ordering_key,),
    ).fetchone()
    if row is None or not row[1] or row[2] != 0 or row[3] is not None:
        return None
    return int(row[0])


def leased(conn: sqlite3.Connection, row_id: int) -> bool:
    """True while a deliverer holds the row (it may be on its way)."""
    found = conn.execute("SELECT 1 FROM temp.outbox_leases WHERE id = ?", (row_id,)).fetchone()
    return found is not None


class SQLiteOutbox:
    """The outbox part of ``Store`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

    async def claim_outbox(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> OutboxClaim:
        """Lease claimable rows (in memory) and say when the next one falls due."""

        def write(conn: sqlite3.Connection) -> OutboxClaim:
            # At most CLAIM_PER_DESTINATION rows of one destination per claim, so one
            # tenant's backlog cannot fill the batch while others wait; in id order, so a
            # cut at the limit never takes a row without the older ones it goes with. Rows
            # behind a waiting one are never due before it (see insert_outbox_row), so few
            # are looked at here.
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox o WHERE o.id IN ("
                " SELECT id FROM (SELECT o.id, row_number() OVER ("
                "   PARTITION BY o.sink, o.destination ORDER BY o.id) AS place"
                "  FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
                f"  AND {_FREE.format(row='o')} AND NOT {_HELD_BACK})"
                " WHERE place <= ? ORDER BY id LIMIT ?) ORDER BY o.id",
                (now, now, now, now, CLAIM_PER_DESTINATION, limit),
            ).fetchall()
            conn.executemany(
                "INSERT OR REPLACE INTO temp.outbox_leases (id, owner, until) VALUES (?, ?, ?)",
                [(row[0], owner, now + lease_seconds) for row in rows],
            )
            return OutboxClaim(items=list(map(_item, rows)), next_due=_next_due(conn))

        return await self.engine.write(write)

    async def renew_outbox_leases(
        self, owner: str, ids: Sequence[int], lease_until: float
    ) -> set[int]:
        """Extend the leases ``owner`` still holds; returns their ids."""
        if not ids:
            return set()

        def write(conn: sqlite3.Connection) -> set[int]:
            rows = conn.execute(
                "UPDATE temp.outbox_leases SET until = ?"
                " WHERE id IN (SELECT value FROM json_each(?)) AND owner = ?"
                " AND id IN (SELECT id FROM outbox WHERE status = 'pending') RETURNING id",
                (lease_until, encode_text(list(ids)), owner),
            ).fetchall()
            return {int(row[0]) for row in rows}

        return await self.engine.write(write)

    async def record_deliveries(
        self, outcomes: Sequence[DeliveryOutcome], now: float, *, owner: str
    ) -> set[int]:
        """Write delivery results of rows still leased to ``owner``, in one transaction;
        returns their ids."""
        if not outcomes:
            return set()

        def write(conn: sqlite3.Connection) -> set[int]:
            recorded: set[int] = set()
            for outcome in outcomes:
                item = outcome.item
                held = conn.execute(
                    "DELETE FROM temp.outbox_leases WHERE id = ? AND owner = ? RETURNING id",
                    (item.id, owner),
                ).fetchone()
                exists = conn.execute("SELECT 1 FROM outbox WHERE id = ?", (item.id,)).fetchone()
                if held is None and exists is not None:
                    continue  # the lease was lost: the row's new owner records it
                recorded.add(item.id)
                if exists is not None:
                    status = outcome.status
                    conn.execute(
                        "UPDATE outbox SET status = ?, attempts = attempts + ?,"
                        " next_attempt_at = coalesce(?, next_attempt_at), last_error = ?,"
                        " merged_into = ?, finished_at = ? WHERE id = ?",
                        (
                            status,
                            0 if outcome.merged_into is not None else 1,
                            outcome.next_attempt_at,
                            outcome.error,
                            outcome.merged_into,
                            None if status == "pending" else now,
                            item.id,
                        ),
                    )
                if outcome.next_attempt_at is not None:
                    # The rows behind it wait for its retry (never due before it).
                    conn.execute(
                        "UPDATE outbox SET next_attempt_at = ? WHERE ordering_key = ?"
                        " AND status = 'pending' AND id > ? AND next_attempt_at < ?",
                        (
                            outcome.next_attempt_at,
                            item.ordering_key,
                            item.id,
                            outcome.next_attempt_at,
                        ),
                    )
                if item.sink == "webhook" and outcome.merged_into is None:
                    conn.execute(
                        "INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id,"
                        " event_type, attempt, status_code, error, duration_ms, created_at)"
                        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS ("
                        "  SELECT 1 FROM webhooks WHERE tenant_id = ? AND id = ?)",
                        (
                            item.tenant_id,
                            item.destination,
                            item.event_id,
                            item.event_type,
                            item.attempts + 1,
                            outcome.status_code,
                            outcome.error,
                            outcome.duration_ms,
                            now,
                            item.tenant_id,
                            item.destination,
                        ),
                    )
                if outcome.activity is not None:
                    insert_activity(conn, item.tenant_id, outcome.activity, now)
            return recorded

        return await self.engine.write(write)

    async def release_leases(self, owner: str | None) -> int:
        """Free one owner's leases, or all."""

        def write(conn: sqlite3.Connection) -> int:
            if owner is None:
                return int(conn.execute("DELETE FROM temp.outbox_leases").rowcount)
            return int(
                conn.execute("DELETE FROM temp.outbox_leases WHERE owner = ?", (owner,)).rowcount
            )

        return await self.engine.write(write)

    async def next_outbox_due(self) -> float | None:
        """When the next row may be claimed (falls due, or its lease runs out)."""
        return await self.engine.write(_next_due)

    async def outbox_stats(self) -> OutboxStats:
        """Depth and age of the outbox."""

        def read(conn: sqlite3.Connection) -> OutboxStats:
            pending, oldest = conn.execute(
                "SELECT count(*), min(created_at) FROM outbox WHERE status = 'pending'"
            ).fetchone()
            dead = conn.execute("SELECT count(*) FROM outbox WHERE status = 'dead'").fetchone()[0]
            return OutboxStats(pending=int(pending), dead=int(dead), oldest_pending_at=oldest)

        return await self.engine.read(read)


def _next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(max(o.next_attempt_at, coalesce(("
        "  SELECT l.until FROM temp.outbox_leases l WHERE l.id = o.id), 0)))"
        f" FROM outbox o WHERE o.status = 'pending' AND NOT {_WAITING}"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(
        id=row[0],
        tenant_id=row[1],
        sink=row[2],
        destination=row[3],
        event_id=row[4],
        event_type=row[5],
        device_id=row[6],
        payload=decode(row[7]),
        attempts=row[8],
        created_at=row[9],
        ordering_key=row[10],
        mergeable=bool(row[11]),
    )
