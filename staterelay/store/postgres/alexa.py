"""PostgreSQL implementation of the Alexa part of the store, and the Alexa fan-out."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING

from staterelay.core.records.alexa import AlexaGrant, AlexaReportNote, grant_from_row
from staterelay.store.postgres.engine import PostgresEngine, bind_tenant, clean_text, rowcount
from staterelay.store.sqlite.alexa import SINK

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

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


async def _delete_pending(conn: Connection, tenant_id: str, grant_id: str) -> None:
    await conn.execute(
        "DELETE FROM outbox WHERE tenant_id = $1 AND sink = $2 AND destination = $3"
        " AND status = 'pending'",
        tenant_id,
        SINK,
        grant_id,
    )


class PostgresAlexa:
    """``AlexaStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    async def save_alexa_grant(self, grant: AlexaGrant) -> AlexaGrant:
        """Replace the user's grant (and drop the old one's undelivered events)."""
        async with self.engine.tenant(grant.tenant_id) as conn:
            old = await conn.fetchval(
                "DELETE FROM alexa_grants WHERE tenant_id = $1 AND user_id = $2 RETURNING id",
                grant.tenant_id,
                grant.user_id,
            )
            if old is not None:
                await _delete_pending(conn, grant.tenant_id, old)
            await conn.execute(
                f"INSERT INTO alexa_grants ({_GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6,"
                " $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
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
            )
        return grant

    async def get_alexa_grant(self, tenant_id: str, grant_id: str) -> AlexaGrant | None:
        """One grant of a tenant."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_GRANT_COLUMNS}, {_OAUTH_REVOKED} FROM alexa_grants"
                " WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                grant_id,
            )
        return None if row is None else grant_from_row(tuple(row))

    async def find_user_alexa_grant(self, tenant_id: str, user_id: str) -> AlexaGrant | None:
        """The user's grant, if any."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_GRANT_COLUMNS}, {_OAUTH_REVOKED} FROM alexa_grants"
                " WHERE tenant_id = $1 AND user_id = $2",
                tenant_id,
                user_id,
            )
        return None if row is None else grant_from_row(tuple(row))

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
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE alexa_grants SET access_token_ciphertext = $1,"
                " refresh_token_ciphertext = $2, token_expires_at = $3, refreshed_at = $4,"
                " token_error = NULL, token_error_at = NULL"
                " WHERE tenant_id = $5 AND id = $6 AND status = 'active'",
                access_token_ciphertext,
                refresh_token_ciphertext,
                expires_at,
                refreshed_at,
                tenant_id,
                grant_id,
            )
        return rowcount(status) == 1

    async def note_alexa_token_error(
        self, tenant_id: str, grant_id: str, error: str, at: float
    ) -> None:
        """Remember the latest token problem."""
        async with self.engine.tenant(tenant_id) as conn:
            await conn.execute(
                "UPDATE alexa_grants SET token_error = $1, token_error_at = $2"
                " WHERE tenant_id = $3 AND id = $4",
                clean_text(error),
                at,
                tenant_id,
                grant_id,
            )

    async def unlink_alexa_grant(
        self, tenant_id: str, grant_id: str, reason: str, at: float
    ) -> bool:
        """Forget an active grant's tokens and undelivered events."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE alexa_grants SET status = 'unlinked', access_token_ciphertext = NULL,"
                " refresh_token_ciphertext = NULL, token_expires_at = NULL, unlinked_at = $1,"
                " unlinked_reason = $2 WHERE tenant_id = $3 AND id = $4 AND status = 'active'",
                at,
                clean_text(reason),
                tenant_id,
                grant_id,
            )
            if rowcount(status) != 1:
                return False
            await _delete_pending(conn, tenant_id, grant_id)
        return True

    async def record_alexa_reports(self, notes: Sequence[AlexaReportNote]) -> None:
        """Write the latest report results, each under its grant's tenant."""
        if not notes:
            return
        ordered = sorted(notes, key=lambda note: note.tenant_id)
        async with self.engine.instance() as conn:
            for tenant_id, group in groupby(ordered, key=lambda note: note.tenant_id):
                await bind_tenant(conn, tenant_id)
                await conn.executemany(
                    "UPDATE alexa_grants SET last_report_at = $1, last_report_status = $2,"
                    " last_report_error = $3 WHERE tenant_id = $4 AND id = $5"
                    " AND (last_report_at IS NULL OR last_report_at <= $1)",
                    [
                        (
                            note.at,
                            note.status_code,
                            clean_text(note.error),
                            tenant_id,
                            note.grant_id,
                        )
                        for note in group
                    ],
                )
