"""PostgreSQL implementation of the Alexa part of the store, and the Alexa fan-out."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING

from staterelay.core.records import NewOutboxEvent
from staterelay.core.records.alexa import AlexaGrant, AlexaReportNote, grant_from_row
from staterelay.store.delivery import alexa_key, is_routine_trigger
from staterelay.store.postgres_engine import PostgresEngine, bind_tenant, clean_text, rowcount
from staterelay.store.postgres_outbox import insert_outbox_row, mergeable_tail
from staterelay.store.sqlite_alexa import ALEXA_EVENT_TYPES, SINK

if TYPE_CHECKING:
    from staterelay.store.postgres_engine import Connection

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


async def alexa_fan_out(conn: Connection, tenant_id: str, event: NewOutboxEvent, now: float) -> int:
    """One row per active grant of the tenant for every event Alexa must hear about.

    The row's payload also carries ``at`` (the commit time, which the changed properties'
    ``changed_at`` hold) and ``device_version`` (the device's version with this change), so
    the sink can tell which rows a report it already sent has covered.

    As on SQLite, a state change that is not a Routine trigger merges into the newest row of
    its key when that row may take it (``mergeable_tail``, which locks it until this change
    commits); everything else gets a row of its own, behind the key's earlier rows.
    """
    if (
        event.event_type not in ALEXA_EVENT_TYPES
        or event.device_id is None
        or event.only_destination is not None
    ):
        return 0
    grants = await conn.fetch(
        "SELECT id FROM alexa_grants WHERE tenant_id = $1 AND status = 'active' ORDER BY id",
        tenant_id,
    )
    if not grants:
        return 0
    device = await conn.fetchrow(
        "SELECT version, type, options FROM devices WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        event.device_id,
    )
    mergeable = (
        event.event_type == "state.changed"
        and device is not None
        and not is_routine_trigger(device["type"], device["options"], event.payload.get("property"))
    )
    stamped = NewOutboxEvent(
        event_type=event.event_type,
        device_id=event.device_id,
        payload={
            **event.payload,
            "at": now,
            "device_version": None if device is None else device["version"],
        },
    )
    written = 0
    for grant in grants:
        key = alexa_key(grant["id"], event.device_id)
        tail = await mergeable_tail(conn, tenant_id, key) if mergeable else None
        if tail is not None:
            # The row now stands for this change too (see the SQLite fan-out).
            await conn.execute(
                "UPDATE outbox SET payload = payload || jsonb_build_object('device_version',"
                " $1::integer) WHERE tenant_id = $2 AND id = $3",
                stamped.payload["device_version"],
                tenant_id,
                tail,
            )
            continue
        await insert_outbox_row(
            conn, tenant_id, SINK, grant["id"], stamped, now, ordering_key=key, mergeable=mergeable
        )
        written += 1
    return written
