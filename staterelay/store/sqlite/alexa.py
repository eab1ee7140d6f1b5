"""SQLite implementation of the Alexa part of the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from staterelay.core.records.alexa import AlexaGrant, AlexaReportNote, grant_from_row
from staterelay.store.sqlite.engine import SQLiteEngine

SINK: Final = "alexa"

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
