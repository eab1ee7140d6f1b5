"""PostgreSQL implementation of the OAuth part of the store.

Clients are instance-wide (no tenant). A code or token digest names its tenant: the store
asks ``sr_oauth_code_tenant``/``sr_oauth_token_tenant`` which one, binds it, and does the
rest under row-level security.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from staterelay.core.errors import Conflict
from staterelay.core.records.oauth import (
    CodeOutcome,
    LinkedApp,
    NewOAuthToken,
    OAuthClient,
    OAuthCode,
    OAuthGrant,
    OAuthToken,
    Rotation,
)
from staterelay.store.postgres.engine import PostgresEngine, rowcount

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

_CLIENT_COLUMNS = (
    "id, name, redirect_uris, token_endpoint_auth_method, scopes, source, created_at, secret_digest"
)
_CODE_COLUMNS = (
    "digest, tenant_id, user_id, client_id, redirect_uri, redirect_uri_given, scopes,"
    " code_challenge, code_challenge_method, created_at, expires_at, used_at"
)
_TOKEN_COLUMNS = (
    "t.digest, t.kind, t.tenant_id, g.user_id, t.grant_id, g.client_id, t.scopes, t.created_at,"
    " t.expires_at, t.revoked_at, t.rotated_at, g.revoked_at, t.successor"
)
_BIND_CODE_TENANT = (
    "SELECT set_config('app.tenant_id', coalesce(sr_oauth_code_tenant($1), ''), true)"
)
_BIND_TOKEN_TENANT = (
    "SELECT set_config('app.tenant_id', coalesce(sr_oauth_token_tenant($1), ''), true)"
)


def _client(row: asyncpg.Record) -> OAuthClient:
    return OAuthClient(
        id=row[0],
        name=row[1],
        redirect_uris=tuple(row[2]),
        token_endpoint_auth_method=row[3],
        scopes=tuple(row[4]),
        source=row[5],
        created_at=row[6],
        secret_digest=row[7],
    )


def _code(row: asyncpg.Record) -> OAuthCode:
    return OAuthCode(
        digest=row[0],
        tenant_id=row[1],
        user_id=row[2],
        client_id=row[3],
        redirect_uri=row[4],
        redirect_uri_given=row[5],
        scopes=tuple(row[6]),
        code_challenge=row[7],
        code_challenge_method=row[8],
        created_at=row[9],
        expires_at=row[10],
        used_at=row[11],
    )


def _token(row: asyncpg.Record) -> OAuthToken:
    return OAuthToken(
        digest=row[0],
        kind=row[1],
        tenant_id=row[2],
        user_id=row[3],
        grant_id=row[4],
        client_id=row[5],
        scopes=tuple(row[6]),
        created_at=row[7],
        expires_at=row[8],
        revoked_at=row[9],
        rotated_at=row[10],
        grant_revoked_at=row[11],
        successor=row[12],
    )


def _client_values(client: OAuthClient) -> tuple[Any, ...]:
    return (
        client.id,
        client.name,
        list(client.redirect_uris),
        client.token_endpoint_auth_method,
        list(client.scopes),
        client.source,
        client.created_at,
        client.secret_digest,
    )


async def _load_token(conn: Connection, digest: str) -> OAuthToken | None:
    row = await conn.fetchrow(
        f"SELECT {_TOKEN_COLUMNS} FROM oauth_tokens t"
        " JOIN oauth_grants g ON g.tenant_id = t.tenant_id AND g.id = t.grant_id"
        " WHERE t.digest = $1",
        digest,
    )
    return None if row is None else _token(row)


async def _insert_tokens(
    conn: Connection,
    tenant_id: str,
    grant_id: str,
    tokens: Sequence[NewOAuthToken],
    now: float,
) -> None:
    await conn.executemany(
        "INSERT INTO oauth_tokens (digest, kind, tenant_id, grant_id, scopes, created_at,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (t.digest, t.kind, tenant_id, grant_id, list(t.scopes), now, t.expires_at)
            for t in tokens
        ],
    )


async def _revoke_grant(
    conn: Connection, tenant_id: str, grant_id: str, now: float, reason: str
) -> bool:
    status = await conn.execute(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2"
        " WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL",
        now,
        reason,
        tenant_id,
        grant_id,
    )
    # Tokens are revoked too (and successor pairs dropped), so no row stays usable alone.
    await conn.execute(
        "UPDATE oauth_tokens SET revoked_at = coalesce(revoked_at, $1), successor = NULL"
        " WHERE tenant_id = $2 AND grant_id = $3",
        now,
        tenant_id,
        grant_id,
    )
    return rowcount(status) == 1


async def _revoke_code_grant(conn: Connection, digest: str, now: float) -> bool:
    """Revoke the grant a used code's exchange created; False when the code is unused.

    The transaction must be bound to the code's tenant.
    """
    row = await conn.fetchrow(
        "SELECT tenant_id, grant_id FROM oauth_codes WHERE digest = $1 AND used_at IS NOT NULL",
        digest,
    )
    if row is None:
        return False
    if row["grant_id"] is not None:
        await _revoke_grant(conn, row["tenant_id"], row["grant_id"], now, "code reused")
    return True


class PostgresOAuth:
    """``OAuthStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    # clients -------------------------------------------------------------------------------
    async def create_oauth_client(self, client: OAuthClient) -> OAuthClient:
        """Insert a client; Conflict on a taken id."""
        async with self.engine.instance() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO oauth_clients ({_CLIENT_COLUMNS}, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    *_client_values(client),
                    client.created_at,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict("a client with this id exists", field="id") from None
        return client

    async def upsert_oauth_client(self, client: OAuthClient) -> OAuthClient:
        """Insert or update a client."""
        async with self.engine.instance() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO oauth_clients ({_CLIENT_COLUMNS}, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " redirect_uris = excluded.redirect_uris,"
                " token_endpoint_auth_method = excluded.token_endpoint_auth_method,"
                " scopes = excluded.scopes, source = excluded.source,"
                " secret_digest = excluded.secret_digest, updated_at = excluded.updated_at"
                f" RETURNING {_CLIENT_COLUMNS}",
                *_client_values(client),
                client.created_at,
            )
        assert row is not None
        return _client(row)

    async def get_oauth_client(self, client_id: str) -> OAuthClient | None:
        """One client."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1", client_id
            )
        return None if row is None else _client(row)

    async def list_oauth_clients(self) -> Sequence[OAuthClient]:
        """Every client, oldest first."""
        async with self.engine.instance(readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, seq"
            )
        return [_client(row) for row in rows]

    async def delete_oauth_client(self, client_id: str) -> bool:
        """Delete a client; its grants, codes and tokens in every tenant go with it.

        The cascade is the foreign keys' own: referential actions are not subject to
        row-level security, so the app role needs no cross-tenant function for it.
        """
        async with self.engine.instance() as conn:
            status = await conn.execute("DELETE FROM oauth_clients WHERE id = $1", client_id)
        return rowcount(status) == 1

    # codes ---------------------------------------------------------------------------------
    async def save_oauth_code(self, code: OAuthCode) -> None:
        """Insert a code."""
        async with self.engine.tenant(code.tenant_id) as conn:
            await conn.execute(
                f"INSERT INTO oauth_codes ({_CODE_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                code.digest,
                code.tenant_id,
                code.user_id,
                code.client_id,
                code.redirect_uri,
                code.redirect_uri_given,
                list(code.scopes),
                code.code_challenge,
                code.code_challenge_method,
                code.created_at,
                code.expires_at,
                code.used_at,
            )

    async def get_oauth_code(self, digest: str) -> OAuthCode | None:
        """One code by digest."""
        async with self.engine.instance(readonly=True) as conn:
            if not await conn.fetchval(_BIND_CODE_TENANT, digest):
                return None
            row = await conn.fetchrow(
                f"SELECT {_CODE_COLUMNS} FROM oauth_codes WHERE digest = $1", digest
            )
        return None if row is None else _code(row)

    async def exchange_oauth_code(
        self,
        digest: str,
        client_id: str,
        grant: OAuthGrant,
        tokens: Sequence[NewOAuthToken],
        now: float,
    ) -> CodeOutcome:
        """Consume the code and create the grant and tokens, atomically."""
        async with self.engine.tenant(grant.tenant_id) as conn:
            # Of two concurrent exchanges the second waits on the row lock, then finds the
            # code used: it is a reuse.
            status = await conn.execute(
                "UPDATE oauth_codes SET used_at = $1, grant_id = $2"
                " WHERE digest = $3 AND client_id = $4 AND tenant_id = $5 AND user_id = $6"
                " AND used_at IS NULL AND expires_at > $1",
                now,
                grant.id,
                digest,
                client_id,
                grant.tenant_id,
                grant.user_id,
            )
            if rowcount(status) != 1:
                return "reused" if await _revoke_code_grant(conn, digest, now) else "invalid"
            await conn.execute(
                "INSERT INTO oauth_grants (id, tenant_id, user_id, client_id, scopes, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                grant.id,
                grant.tenant_id,
                grant.user_id,
                grant.client_id,
                list(grant.scopes),
                grant.created_at,
            )
            await _insert_tokens(conn, grant.tenant_id, grant.id, tokens, now)
        return "issued"

    async def revoke_reused_oauth_code(self, digest: str, now: float) -> bool:
        """Revoke the grant a used code created."""
        async with self.engine.instance() as conn:
            if not await conn.fetchval(_BIND_CODE_TENANT, digest):
                return False
            return await _revoke_code_grant(conn, digest, now)

    # tokens and grants ---------------------------------------------------------------------
    async def get_oauth_token(self, digest: str) -> OAuthToken | None:
        """A token with its grant."""
        async with self.engine.instance(readonly=True) as conn:
            if not await conn.fetchval(_BIND_TOKEN_TENANT, digest):
                return None
            return await _load_token(conn, digest)

    async def rotate_oauth_refresh(
        self, digest: str, successor: str, tokens: Sequence[NewOAuthToken], now: float
    ) -> Rotation:
        """Rotate a refresh token and insert its successors, atomically."""
        async with self.engine.instance() as conn:
            if not await conn.fetchval(_BIND_TOKEN_TENANT, digest):
                return Rotation("revoked")
            # A concurrent refresh of the same token waits on the row lock and then finds
            # it rotated: it lost, and gets the winner's successor.
            status = await conn.execute(
                "UPDATE oauth_tokens t SET rotated_at = $1, successor = $2"
                " WHERE t.digest = $3 AND t.kind = 'refresh' AND t.rotated_at IS NULL"
                " AND t.revoked_at IS NULL AND EXISTS (SELECT 1 FROM oauth_grants g"
                " WHERE g.tenant_id = t.tenant_id AND g.id = t.grant_id AND g.revoked_at IS NULL)",
                now,
                successor,
                digest,
            )
            current = await _load_token(conn, digest)
            if current is None:
                return Rotation("revoked")
            if rowcount(status) != 1:
                if current.revoked or current.successor is None:
                    return Rotation("revoked")
                return Rotation("lost", current.successor)
            await _insert_tokens(conn, current.tenant_id, current.grant_id, tokens, now)
        return Rotation("rotated")

    async def reissue_oauth_refresh(
        self,
        digest: str,
        rotated_at: float,
        successor: str,
        tokens: Sequence[NewOAuthToken],
        now: float,
    ) -> Rotation:
        """Rotate an already rotated refresh token again while its successor is unused."""
        async with self.engine.instance() as conn:
            if not await conn.fetchval(_BIND_TOKEN_TENANT, digest):
                return Rotation("revoked")
            # The row lock orders concurrent reissues of one token: the second sees the
            # first's rotated_at and replays its successor.
            locked = await conn.fetchval(
                "SELECT rotated_at FROM oauth_tokens WHERE digest = $1 FOR UPDATE", digest
            )
            current = await _load_token(conn, digest)
            if current is None or current.kind != "refresh" or current.revoked:
                return Rotation("revoked")
            if locked != rotated_at:
                if current.successor is None:
                    return Rotation("revoked")
                return Rotation("lost", current.successor)
            used = await conn.fetchval(
                "SELECT 1 FROM oauth_tokens WHERE tenant_id = $1 AND grant_id = $2"
                " AND kind = 'refresh' AND digest <> $3 AND rotated_at >= $4 LIMIT 1",
                current.tenant_id,
                current.grant_id,
                digest,
                rotated_at,
            )
            if used is not None:
                return Rotation("superseded")
            await conn.execute(
                "UPDATE oauth_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND grant_id = $3"
                " AND kind = 'refresh' AND digest <> $4 AND rotated_at IS NULL"
                " AND revoked_at IS NULL",
                now,
                current.tenant_id,
                current.grant_id,
                digest,
            )
            await conn.execute(
                "UPDATE oauth_tokens SET rotated_at = $1, successor = $2 WHERE digest = $3",
                now,
                successor,
                digest,
            )
            await _insert_tokens(conn, current.tenant_id, current.grant_id, tokens, now)
        return Rotation("rotated")

    async def revoke_oauth_grant(
        self,
        tenant_id: str,
        grant_id: str,
        now: float,
        *,
        reason: str,
        user_id: str | None = None,
    ) -> bool:
        """Revoke a grant and its tokens."""
        async with self.engine.tenant(tenant_id) as conn:
            if user_id is not None:
                owned = await conn.fetchval(
                    "SELECT 1 FROM oauth_grants WHERE tenant_id = $1 AND id = $2 AND user_id = $3",
                    tenant_id,
                    grant_id,
                    user_id,
                )
                if owned is None:
                    return False
            return await _revoke_grant(conn, tenant_id, grant_id, now, reason)

    async def revoke_oauth_access_token(self, digest: str, now: float) -> bool:
        """Revoke one access token."""
        async with self.engine.instance() as conn:
            if not await conn.fetchval(_BIND_TOKEN_TENANT, digest):
                return False
            status = await conn.execute(
                "UPDATE oauth_tokens SET revoked_at = $1"
                " WHERE digest = $2 AND kind = 'access' AND revoked_at IS NULL",
                now,
                digest,
            )
        return rowcount(status) == 1

    async def list_oauth_grants(self, tenant_id: str, user_id: str) -> Sequence[LinkedApp]:
        """A user's active grants, newest first."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT g.id, g.client_id, c.name, g.scopes, g.created_at, g.last_used_at"
                " FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id"
                " WHERE g.tenant_id = $1 AND g.user_id = $2 AND g.revoked_at IS NULL"
                " ORDER BY g.created_at DESC, g.seq DESC",
                tenant_id,
                user_id,
            )
        return [
            LinkedApp(
                grant_id=row[0],
                client_id=row[1],
                client_name=row[2],
                scopes=tuple(row[3]),
                created_at=row[4],
                last_used_at=row[5],
            )
            for row in rows
        ]

    async def touch_oauth_grants(self, last_used: Mapping[str, float]) -> None:
        """Record last-used times (grants of any tenant)."""
        if not last_used:
            return
        async with self.engine.instance() as conn:
            await conn.execute(
                "SELECT sr_touch_oauth_grants($1, $2)", list(last_used), list(last_used.values())
            )

    async def purge_oauth(self, *, successors_before: float, expired_before: float) -> int:
        """Drop old successor pairs, expired codes and expired access tokens."""
        async with self.engine.instance() as conn:
            return int(
                await conn.fetchval(
                    "SELECT sr_purge_oauth($1, $2)", successors_before, expired_before
                )
            )
