"""SQLite implementation of the Alexa part of the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from staterelay.core.records import NewOutboxEvent
from staterelay.core.records.alexa import AlexaGrant, AlexaReportNote, grant_from_row
from staterelay.jsoncodec import decode
from staterelay.store.delivery import alexa_key, is_routine_trigger
from staterelay.store.sqlite_engine import SQLiteEngine
from staterelay.store.sqlite_outbox import insert_outbox_row, mergeable_tail

SINK: Final = "alexa"
# Property changes and presses become ChangeReports and DoorbellPress events; the device
# lifecycle becomes AddOrUpdateReport and DeleteReport, so Alexa keeps no ghost devices.
ALEXA_EVENT_TYPES: Final = frozenset(
    {"state.changed", "button.pressed", "device.created", "device.updated", "device.deleted"}
)

_GRANT_COLUMNS = (
    "id, tenant_id, user_id, region, status, access_token_ciphertext, refresh_token_ciphertext,"
    " token_expires_at, linked_at, refreshed_at, token_error, token_error_at, last_report_at,"
    " last_report_status, last_report_error, unlinked_at, unlinked_reason, oauth_grant_id"
)
# Whether the linked app that made the grant is gone (revoked, or its client deleted).
_OAUTH_REVOKED = (
    "coalesce((SELECT o.revoked_at IS NOT NULL FROM oauth_grants o"
    " WHERE o.tenant_id = alexa_grants.tenant_id AND o.id = alexa_grants.oauth_grant_id),"
    " oauth_grant_id IS NOT NULL)"
)


def _delete_pending(conn: sqlite3.Connection, tenant_id: str, grant_id: str) -> None:
    conn.execute(
        "DELETE FROM outbox WHERE sink = ? AND destination = ? AND tenant_id = ?"
        " AND status = 'pending'",
        (SINK, grant_id, tenant_id),
    )


class SQLiteAlexa:
    """``AlexaStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

    async def save_alexa_grant(self, grant: AlexaGrant) -> AlexaGrant:
        """Replace the user's grant (and drop the old one's undelivered events)."""

        def write(conn: sqlite3.Connection) -> AlexaGrant:
            old = conn.execute(
                "SELECT id FROM alexa_grants WHERE tenant_id = ? AND user_id = ?",
                (grant.tenant_id, grant.user_id),
            ).fetchone()
            if old is not None:
                _delete_pending(conn, grant.tenant_id, old[0])
                conn.execute("DELETE FROM alexa_grants WHERE id = ?", (old[0],))
            conn.execute(
                f"INSERT INTO alexa_grants ({_GRANT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    grant.id,
                    grant.tenant_id,
                    grant.user_id,
                    grant.region,
                    grant.status,
                    grant.access_token_ciphertext,
                    grant.refresh_token_ciphertext,
                    grant.token_expires_at,
                    grant.linked_at,
                    grant.refreshed_at,
                    grant.token_error,
                    grant.token_error_at,
                    grant.last_report_at,
                    grant.last_report_status,
                    grant.last_report_error,
                    grant.unlinked_at,
                    grant.unlinked_reason,
                    grant.oauth_grant_id,
                ),
            )
            return grant

        return await self.engine.write(write)

    async def get_alexa_grant(self, tenant_id: str, grant_id: str) -> AlexaGrant | None:
        """One grant of a tenant."""

        def read(conn: sqlite3.Connection) -> AlexaGrant | None:
            row = conn.execute(
                f"SELECT {_GRANT_COLUMNS}, {_OAUTH_REVOKED} FROM alexa_grants"
                " WHERE tenant_id = ? AND id = ?",
                (tenant_id, grant_id),
            ).fetchone()
            return None if row is None else grant_from_row(row)

        return await self.engine.read_statement(read)

    async def find_user_alexa_grant(self, tenant_id: str, user_id: str) -> AlexaGrant | None:
        """The user's grant, if any."""

        def read(conn: sqlite3.Connection) -> AlexaGrant | None:
            row = conn.execute(
                f"SELECT {_GRANT_COLUMNS}, {_OAUTH_REVOKED} FROM alexa_grants"
                " WHERE tenant_id = ? AND user_id = ?",
                (tenant_id, user_id),
            ).fetchone()
            return None if row is None else grant_from_row(row)

        return await self.engine.read_statement(read)

    async def update_alexa_tokens(
        self,
        tenant_id: str,
        grant_id: str,
        *,
        access_token_ciphertext: str,
        refresh_token_ciphertext: str,
        expires_at: float,
        refreshed_at: float,
    ) -> bool:
        """Store refreshed tokens of an active grant."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE alexa_grants SET access_token_ciphertext = ?, refresh_token_ciphertext = ?,"
                " token_expires_at = ?, refreshed_at = ?, token_error = NULL,"
                " token_error_at = NULL WHERE tenant_id = ? AND id = ? AND status = 'active'",
                (
                    access_token_ciphertext,
                    refresh_token_ciphertext,
                    expires_at,
                    refreshed_at,
                    tenant_id,
                    grant_id,
                ),
            )
            return cursor.rowcount == 1

        return await self.engine.write(write)

    async def note_alexa_token_error(
        self, tenant_id: str, grant_id: str, error: str, at: float
    ) -> None:
        """Remember the latest token problem."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE alexa_grants SET token_error = ?, token_error_at = ?"
                " WHERE tenant_id = ? AND id = ?",
                (error, at, tenant_id, grant_id),
            )

        await self.engine.write(write)

    async def unlink_alexa_grant(
        self, tenant_id: str, grant_id: str, reason: str, at: float
    ) -> bool:
        """Forget an active grant's tokens and undelivered events."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE alexa_grants SET status = 'unlinked', access_token_ciphertext = NULL,"
                " refresh_token_ciphertext = NULL, token_expires_at = NULL, unlinked_at = ?,"
                " unlinked_reason = ? WHERE tenant_id = ? AND id = ? AND status = 'active'",
                (at, reason, tenant_id, grant_id),
            )
            if cursor.rowcount != 1:
                return False
            _delete_pending(conn, tenant_id, grant_id)
            return True

        return await self.engine.write(write)

    async def record_alexa_reports(self, notes: Sequence[AlexaReportNote]) -> None:
        """Write the latest report results."""
        if not notes:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE alexa_grants SET last_report_at = ?, last_report_status = ?,"
                " last_report_error = ? WHERE tenant_id = ? AND id = ?"
                " AND (last_report_at IS NULL OR last_report_at <= ?)",
                [
                    (note.at, note.status_code, note.error, note.tenant_id, note.grant_id, note.at)
                    for note in notes
                ],
            )

        await self.engine.write(write)


def alexa_fan_out(
    conn: sqlite3.Connection, tenant_id: str, event: NewOutboxEvent, now: float
) -> int:
    """One row per active grant of the tenant for every event Alexa must hear about.

    The row's payload also carries ``at`` (the commit time, which the changed properties'
    ``changed_at`` hold) and ``device_version`` (the device's version with this change), so
    the sink can tell which rows a report it already sent has covered.

    Rows of one endpoint and grant share an ordering key. A state change that is not a
    Routine trigger is merged at once into the key's newest row when that row is such a
    change too and no one has picked it up yet: the sink builds that row's ChangeReport from
    the device as it is when sending, so it carries this change too. Routine-trigger
    transitions, presses and lifecycle events are never merged, and nothing merges past them.
    """
    if (
        event.event_type not in ALEXA_EVENT_TYPES
        or event.device_id is None
        or event.only_destination is not None
    ):
        return 0
    # One statement for what the fan-out needs to know (it runs for every change): the
    # active grants and the device's version and type (as this transaction left them).
    grants = conn.execute(
        "SELECT g.id, d.version, d.type, d.options"
        " FROM alexa_grants g LEFT JOIN devices d ON d.tenant_id = g.tenant_id AND d.id = ?"
        " WHERE g.tenant_id = ? AND g.status = 'active'",
        (event.device_id, tenant_id),
    ).fetchall()
    if not grants:
        return 0
    _, version, device_type, options = grants[0]
    mergeable = (
        event.event_type == "state.changed"
        and device_type is not None
        and not is_routine_trigger(device_type, decode(options), event.payload.get("property"))
    )
    stamped = NewOutboxEvent(
        event_type=event.event_type,
        device_id=event.device_id,
        payload={**event.payload, "at": now, "device_version": version},
    )
    written = 0
    for grant_id, _, _, _ in grants:
        key = alexa_key(grant_id, event.device_id)
        tail = mergeable_tail(conn, key) if mergeable else None
        if tail is not None:
            # The row now stands for this change too: it is covered only once a report
            # has told Alexa this version.
            conn.execute(
                "UPDATE outbox SET payload = json_set(payload, '$.device_version', ?) WHERE id = ?",
                (version, tail),
            )
            continue
        insert_outbox_row(
            conn, tenant_id, SINK, grant_id, stamped, now, ordering_key=key, mergeable=mergeable
        )
        written += 1
    return written
