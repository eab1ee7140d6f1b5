"""The outbox on SQLite: queueing rows, claiming them, recording what became of them.

One process delivers a SQLite database (the instance lock sees to it), so the leases it
takes live in a table of the writer connection's own memory (``temp.outbox_leases``): a
claim writes nothing to the database file, and a process that dies leaves no lease behind.

Results are written back in batches. A retry or a dead row is written at once. A row that
was sent (or merged) is marked done in memory at once, which lets the rows of its key behind
it go, and its result (status, history, activity) rides along with the next transaction
that writes the file anyway, or is written on its own within ``RECORD_WITHIN`` seconds: a
busy household's changes and their delivery results share commits. A crash in between
sends the row again after the restart, as a crash between sending and recording always
could (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
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

_LOGGER = logging.getLogger(__name__)

CLAIM_PER_DESTINATION: Final = 25
RECORD_WITHIN: Final = 1.0  # seconds a sent row's result may wait for a commit to share
# A done row keeps its lease (nobody claims it again) until its result is written.
_FOREVER: Final = float("inf")
LEASES: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS outbox_leases ("
    " id INTEGER PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL,"
    " done INTEGER NOT NULL DEFAULT 0)"
)
_FINISHED: Final = frozenset({"delivered", "merged"})
_NOT_DONE: Final = (
    "NOT EXISTS (SELECT 1 FROM temp.outbox_leases d WHERE d.id = {row}.id AND d.done)"
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
    f" AND e.status = 'pending' AND e.id < o.id AND {_NOT_DONE.format(row='e')}"
    " AND NOT (e.mergeable AND o.mergeable"
    f" AND e.next_attempt_at <= ? AND {_FREE.format(row='e')}))"
)
# For "when may the next row be claimed": a row waits on an older one that is not mergeable
# with it, or is being sent; that older row's own time counts instead.
_WAITING: Final = (
    "EXISTS (SELECT 1 FROM outbox e WHERE e.ordering_key = o.ordering_key"
    f" AND e.status = 'pending' AND e.id < o.id AND {_NOT_DONE.format(row='e')}"
    " AND NOT (e.mergeable AND o.mergeable"
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
    a retry, this one waits as long, so the dispatcher does not look at it meanwhile. A
    key's pending rows are due in the order of their ids (a retry moves the rows behind it
    too), so the newest one is due last: one index step, however many wait behind a
    receiver that is down.
    """
    conn.execute(
        "INSERT INTO outbox (tenant_id, sink, destination, ordering_key, event_id, event_type,"
        " device_id, payload, mergeable, next_attempt_at, created_at) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, max(?, coalesce((SELECT h.next_attempt_at FROM outbox h"
        "  WHERE h.ordering_key = ? AND h.status = 'pending' ORDER BY h.id DESC LIMIT 1), 0)),"
        " ?)",
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


def merge_into_tail(conn: sqlite3.Connection, ordering_key: str, version: int | None) -> bool:
    """Stamp ``version`` on the key's newest pending row if a change may still be merged
    into it; True when it was (the row now stands for this change too).

    Only the tail qualifies (so a merged report never jumps ahead of a row behind it), and
    only while no one has picked it up: it is mergeable, untried and not leased. One
    statement finds the tail and stamps it.
    """
    merged = conn.execute(
        "UPDATE outbox SET payload = json_set(payload, '$.device_version', ?)"
        " WHERE id = (SELECT id FROM outbox WHERE ordering_key = ? AND status = 'pending'"
        "  ORDER BY id DESC LIMIT 1)"
        " AND mergeable AND attempts = 0"
        " AND NOT EXISTS (SELECT 1 FROM temp.outbox_leases l WHERE l.id = outbox.id)"
        " RETURNING id",
        (version, ordering_key),
    ).fetchone()
    return merged is not None


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

        return await self.engine.write(write, file=False)

    async def renew_outbox_leases(
        self, owner: str, ids: Sequence[int], lease_until: float
    ) -> set[int]:
        """Extend the leases ``owner`` still holds; returns their ids."""
        if not ids:
            return set()

        def write(conn: sqlite3.Connection) -> set[int]:
            rows = conn.execute(
                "UPDATE temp.outbox_leases SET until = ?"
                " WHERE id IN (SELECT value FROM json_each(?)) AND owner = ? AND NOT done"
                " AND id IN (SELECT id FROM outbox WHERE status = 'pending') RETURNING id",
                (lease_until, encode_text(list(ids)), owner),
            ).fetchall()
            return {int(row[0]) for row in rows}

        return await self.engine.write(write, file=False)

    async def record_deliveries(
        self,
        outcomes: Sequence[DeliveryOutcome],
        now: float,
        *,
        owner: str,
        on_written: Callable[[set[int]], None] | None = None,
    ) -> set[int]:
        """Record delivery results of rows still leased to ``owner``; returns their ids.

        Retries and dead rows are written before this returns; sent and merged rows are
        done in memory at once and written within ``RECORD_WITHIN`` seconds, sharing a
        commit when one comes (see the module's docstring). ``on_written`` hears of the
        ids on disk: those written at once, and the done ones when they are.
        """
        if not outcomes:
            return set()
        finished = [o for o in outcomes if o.status in _FINISHED]
        others = [o for o in outcomes if o.status not in _FINISHED]

        def write_now(conn: sqlite3.Connection) -> set[int]:
            recorded: set[int] = set()
            for outcome in others:
                held = conn.execute(
                    "DELETE FROM temp.outbox_leases WHERE id = ? AND owner = ? AND NOT done"
                    " RETURNING id",
                    (outcome.item.id, owner),
                ).fetchone()
                if held is None and _exists(conn, outcome.item.id):
                    continue  # the lease was lost: the row's new owner records it
                recorded.add(outcome.item.id)
                _write_outcome(conn, outcome, now)
            return recorded

        def mark_done(conn: sqlite3.Connection) -> list[DeliveryOutcome]:
            done: list[DeliveryOutcome] = []
            for outcome in finished:
                held = conn.execute(
                    "UPDATE temp.outbox_leases SET done = 1, until = ?"
                    " WHERE id = ? AND owner = ? AND NOT done RETURNING id",
                    (_FOREVER, outcome.item.id, owner),
                ).fetchone()
                if held is None and _exists(conn, outcome.item.id):
                    continue  # the lease was lost: the row's new owner records it
                done.append(outcome)
            return done

        def write_done(conn: sqlite3.Connection) -> None:
            for outcome in done:
                conn.execute("DELETE FROM temp.outbox_leases WHERE id = ?", (outcome.item.id,))
                _write_outcome(conn, outcome, now)

        recorded = await self.engine.write(write_now) if others else set()
        if recorded and on_written is not None:
            on_written(set(recorded))
        done = await self.engine.write(mark_done, file=False) if finished else []
        if not done:
            return recorded
        done_ids = {outcome.item.id for outcome in done}
        recorded |= done_ids
        written = self.engine.write_soon(write_done, within=RECORD_WITHIN)
        written.add_done_callback(lambda future: self._after_written(future, done_ids, on_written))
        return recorded

    def _after_written(
        self,
        written: asyncio.Future[None],
        ids: set[int],
        on_written: Callable[[set[int]], None] | None,
    ) -> None:
        error = None if written.cancelled() else written.exception()
        if error is None and not written.cancelled():
            if on_written is not None:
                on_written(ids)
            return
        # Not on disk: the rows become claimable again, and are sent again.
        _LOGGER.error(
            "writing %d delivery results failed (%s); they will be sent again", len(ids), error
        )
        with contextlib.suppress(RuntimeError):  # the database is closing
            freed = self.engine.submit(
                lambda conn: conn.execute(
                    "DELETE FROM temp.outbox_leases WHERE done"
                    " AND id IN (SELECT value FROM json_each(?))",
                    (encode_text(sorted(ids)),),
                ),
                file=False,
            )
            freed.add_done_callback(_retrieved)

    async def release_leases(self, owner: str | None) -> int:
        """Free one owner's leases, or all."""

        def write(conn: sqlite3.Connection) -> int:
            # Done rows keep theirs until their results are written.
            if owner is None:
                return int(conn.execute("DELETE FROM temp.outbox_leases WHERE NOT done").rowcount)
            return int(
                conn.execute(
                    "DELETE FROM temp.outbox_leases WHERE owner = ? AND NOT done", (owner,)
                ).rowcount
            )

        return await self.engine.write(write, file=False)

    async def next_outbox_due(self) -> float | None:
        """When the next row may be claimed (falls due, or its lease runs out)."""
        return await self.engine.write(_next_due, file=False)

    async def outbox_stats(self) -> OutboxStats:
        """Depth and age of the outbox."""

        def read(conn: sqlite3.Connection) -> OutboxStats:
            # A sent row whose result is not on disk yet counts until it is (a crash would
            # send it again): pending means not finished for good.
            pending, oldest = conn.execute(
                "SELECT count(*), min(created_at) FROM outbox WHERE status = 'pending'"
            ).fetchone()
            dead = conn.execute("SELECT count(*) FROM outbox WHERE status = 'dead'").fetchone()[0]
            return OutboxStats(pending=int(pending), dead=int(dead), oldest_pending_at=oldest)

        return await self.engine.read(read)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a fire-and-forget write's outcome as seen (a failure was logged already)."""
    if not future.cancelled():
        future.exception()


def _exists(conn: sqlite3.Connection, row_id: int) -> bool:
    return conn.execute("SELECT 1 FROM outbox WHERE id = ?", (row_id,)).fetchone() is not None


def _write_outcome(conn: sqlite3.Connection, outcome: DeliveryOutcome, now: float) -> None:
    """The row's new status, its retry time (and its key's), its history and activity."""
    item = outcome.item
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
            (outcome.next_attempt_at, item.ordering_key, item.id, outcome.next_attempt_at),
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


def _next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(max(o.next_attempt_at, coalesce(("
        "  SELECT l.until FROM temp.outbox_leases l WHERE l.id = o.id), 0)))"
        f" FROM outbox o WHERE o.status = 'pending' AND {_NOT_DONE.format(row='o')}"
        f" AND NOT {_WAITING}"
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
