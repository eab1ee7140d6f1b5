"""SQLite implementation of the OAuth part of the store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

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
from staterelay.store.sqlite.engine import SQLiteEngine

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


def _scopes(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _client(row: Sequence[Any]) -> OAuthClient:
    return OAuthClient(
        id=row[0],
        name=row[1],
        redirect_uris=tuple(json.loads(row[2])),
        token_endpoint_auth_method=row[3],
        scopes=_scopes(row[4]),
        source=row[5],
        created_at=row[6],
        secret_digest=row[7],
    )


def _code(row: Sequence[Any]) -> OAuthCode:
    return OAuthCode(
        digest=row[0],
        tenant_id=row[1],
        user_id=row[2],
        client_id=row[3],
        redirect_uri=row[4],
        redirect_uri_given=bool(row[5]),
        scopes=_scopes(row[6]),
        code_challenge=row[7],
        code_challenge_method=row[8],
        created_at=row[9],
        expires_at=row[10],
        used_at=row[11],
    )


def _token(row: Sequence[Any]) -> OAuthToken:
    return OAuthToken(
        digest=row[0],
        kind=row[1],
        tenant_id=row[2],
        user_id=row[3],
        grant_id=row[4],
        client_id=row[5],
        scopes=_scopes(row[6]),
        created_at=row[7],
        expires_at=row[8],
        revoked_at=row[9],
        rotated_at=row[10],
        grant_revoked_at=row[11],
        successor=row[12],
    )


def _load_token(conn: sqlite3.Connection, digest: str) -> OAuthToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM oauth_tokens t"
        " JOIN oauth_grants g ON g.tenant_id = t.tenant_id AND g.id = t.grant_id"
        " WHERE t.digest = ?",
        (digest,),
    ).fetchone()
    return _token(row) if row else None


def _insert_tokens(
    conn: sqlite3.Connection,
    tenant_id: str,
    grant_id: str,
    tokens: Sequence[NewOAuthToken],
    now: float,
) -> None:
    conn.executemany(
        "INSERT INTO oauth_tokens (digest, kind, tenant_id, grant_id, scopes, created_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (t.digest, t.kind, tenant_id, grant_id, " ".join(t.scopes), now, t.expires_at)
            for t in tokens
        ],
    )


def _revoke_grant(
    conn: sqlite3.Connection, tenant_id: str, grant_id: str, now: float, reason: str
) -> bool:
    cursor = conn.execute(
        "UPDATE oauth_grants SET revoked_at = ?, revoked_reason = ?"
        " WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
        (now, reason, tenant_id, grant_id),
    )
    # Tokens are revoked too (and successor pairs dropped), so no row stays usable alone.
    conn.execute(
        "UPDATE oauth_tokens SET revoked_at = coalesce(revoked_at, ?), successor = NULL"
        " WHERE tenant_id = ? AND grant_id = ?",
        (now, tenant_id, grant_id),
    )
    return cursor.rowcount == 1


class SQLiteOAuth:
    """``OAuthStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

    # clients -------------------------------------------------------------------------------
    async def create_oauth_client(self, client: OAuthClient) -> OAuthClient:
        """Insert a client; Conflict on a taken id."""

        def write(conn: sqlite3.Connection) -> OAuthClient:
            try:
                conn.execute(
                    f"INSERT INTO oauth_clients ({_CLIENT_COLUMNS}, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_client_values(client), client.created_at),
                )
            except sqlite3.IntegrityError:
                raise Conflict("a client with this id exists", field="id") from None
            return client

        return await self.engine.write(write)

    async def upsert_oauth_client(self, client: OAuthClient) -> OAuthClient:
        """Insert or update a client."""

        def write(conn: sqlite3.Connection) -> OAuthClient:
            conn.execute(
                f"INSERT INTO oauth_clients ({_CLIENT_COLUMNS}, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " redirect_uris = excluded.redirect_uris,"
                " token_endpoint_auth_method = excluded.token_endpoint_auth_method,"
                " scopes = excluded.scopes, source = excluded.source,"
                " secret_digest = excluded.secret_digest, updated_at = excluded.updated_at",
                (*_client_values(client), client.created_at),
            )
            row = conn.execute(
                f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients WHERE id = ?", (client.id,)
            ).fetchone()
            return _client(row)

        return await self.engine.write(write)

    async def get_oauth_client(self, client_id: str) -> OAuthClient | None:
        """One client."""

        def read(conn: sqlite3.Connection) -> OAuthClient | None:
            row = conn.execute(
                f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients WHERE id = ?", (client_id,)
            ).fetchone()
            return _client(row) if row else None

        return await self.engine.read(read)

    async def list_oauth_clients(self) -> Sequence[OAuthClient]:
        """Every client, oldest first."""

        def read(conn: sqlite3.Connection) -> list[OAuthClient]:
            rows = conn.execute(
                f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, rowid"
            ).fetchall()
            return [_client(row) for row in rows]

        return await self.engine.read(read)

    async def delete_oauth_client(self, client_id: str) -> bool:
        """Delete a client and everything issued to it."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM oauth_clients WHERE id = ?", (client_id,))
            return cursor.rowcount == 1

        return await self.engine.write(write)

    # codes ---------------------------------------------------------------------------------
    async def save_oauth_code(self, code: OAuthCode) -> None:
        """Insert a code."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO oauth_codes ({_CODE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code.digest,
                    code.tenant_id,
                    code.user_id,
                    code.client_id,
                    code.redirect_uri,
                    int(code.redirect_uri_given),
                    " ".join(code.scopes),
                    code.code_challenge,
                    code.code_challenge_method,
                    code.created_at,
                    code.expires_at,
                    code.used_at,
                ),
            )

        await self.engine.write(write)

    async def get_oauth_code(self, digest: str) -> OAuthCode | None:
        """One code by digest."""

        def read(conn: sqlite3.Connection) -> OAuthCode | None:
            row = conn.execute(
                f"SELECT {_CODE_COLUMNS} FROM oauth_codes WHERE digest = ?", (digest,)
            ).fetchone()
            return _code(row) if row else None

        return await self.engine.read(read)

    async def exchange_oauth_code(
        self,
        digest: str,
        client_id: str,
        grant: OAuthGrant,
        tokens: Sequence[NewOAuthToken],
        now: float,
    ) -> CodeOutcome:
        """Consume the code and create the grant and tokens, atomically."""

        def write(conn: sqlite3.Connection) -> CodeOutcome:
            cursor = conn.execute(
                "UPDATE oauth_codes SET used_at = ?, grant_id = ?"
                " WHERE digest = ? AND client_id = ? AND tenant_id = ? AND user_id = ?"
                " AND used_at IS NULL AND expires_at > ?",
                (now, grant.id, digest, client_id, grant.tenant_id, grant.user_id, now),
            )
            if cursor.rowcount != 1:
                # Lost to an earlier (or concurrent) use, or unknown, expired, not this client's.
                return "reused" if _revoke_code_grant(conn, digest, now) else "invalid"
            conn.execute(
                "INSERT INTO oauth_grants (id, tenant_id, user_id, client_id, scopes, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    grant.id,
                    grant.tenant_id,
                    grant.user_id,
                    grant.client_id,
                    " ".join(grant.scopes),
                    grant.created_at,
                ),
            )
            _insert_tokens(conn, grant.tenant_id, grant.id, tokens, now)
            return "issued"

        return await self.engine.write(write)

    async def revoke_reused_oauth_code(self, digest: str, now: float) -> bool:
        """Revoke the grant a used code created."""
        return await self.engine.write(lambda conn: _revoke_code_grant(conn, digest, now))

    # tokens and grants ---------------------------------------------------------------------
    async def get_oauth_token(self, digest: str) -> OAuthToken | None:
        """A token with its grant (one statement: its own snapshot)."""
        return await self.engine.read_statement(lambda conn: _load_token(conn, digest))

    async def rotate_oauth_refresh(
        self, digest: str, successor: str, tokens: Sequence[NewOAuthToken], now: float
    ) -> Rotation:
        """Rotate a refresh token and insert its successors, atomically."""

        def write(conn: sqlite3.Connection) -> Rotation:
            cursor = conn.execute(
                "UPDATE oauth_tokens SET rotated_at = ?, successor = ?"
                " WHERE digest = ? AND kind = 'refresh' AND rotated_at IS NULL"
                " AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM oauth_grants g"
                " WHERE g.tenant_id = oauth_tokens.tenant_id AND g.id = oauth_tokens.grant_id"
                " AND g.revoked_at IS NULL)",
                (now, successor, digest),
            )
            current = _load_token(conn, digest)
            if current is None:
                return Rotation("revoked")
            if cursor.rowcount != 1:
                if current.revoked or current.successor is None:
                    return Rotation("revoked")
                return Rotation("lost", current.successor)
            _insert_tokens(conn, current.tenant_id, current.grant_id, tokens, now)
            return Rotation("rotated")

        return await self.engine.write(write)

    async def reissue_oauth_refresh(
        self,
        digest: str,
        rotated_at: float,
        successor: str,
        tokens: Sequence[NewOAuthToken],
        now: float,
    ) -> Rotation:
        """Rotate an already rotated refresh token again while its successor is unused."""

        def write(conn: sqlite3.Connection) -> Rotation:
            current = _load_token(conn, digest)
            if current is None or current.kind != "refresh" or current.revoked:
                return Rotation("revoked")
            if current.rotated_at != rotated_at:
                if current.successor is None:
                    return Rotation("revoked")
                return Rotation("lost", current.successor)
            used = conn.execute(
                "SELECT 1 FROM oauth_tokens WHERE tenant_id = ? AND grant_id = ?"
                " AND kind = 'refresh' AND digest <> ? AND rotated_at >= ? LIMIT 1",
                (current.tenant_id, current.grant_id, digest, rotated_at),
            ).fetchone()
            if used is not None:
                return Rotation("superseded")
            conn.execute(
                "UPDATE oauth_tokens SET revoked_at = ? WHERE tenant_id = ? AND grant_id = ?"
                " AND kind = 'refresh' AND digest <> ? AND rotated_at IS NULL"
                " AND revoked_at IS NULL",
                (now, current.tenant_id, current.grant_id, digest),
            )
            conn.execute(
                "UPDATE oauth_tokens SET rotated_at = ?, successor = ? WHERE digest = ?",
                (now, successor, digest),
            )
            _insert_tokens(conn, current.tenant_id, current.grant_id, tokens, now)
            return Rotation("rotated")

        return await self.engine.write(write)

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

        def write(conn: sqlite3.Connection) -> bool:
            if user_id is not None:
                owned = conn.execute(
                    "SELECT 1 FROM oauth_grants WHERE tenant_id = ? AND id = ? AND user_id = ?",
                    (tenant_id, grant_id, user_id),
                ).fetchone()
                if owned is None:
                    return False
            return _revoke_grant(conn, tenant_id, grant_id, now, reason)

        return await self.engine.write(write)

    async def revoke_oauth_access_token(self, digest: str, now: float) -> bool:
        """Revoke one access token."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE oauth_tokens SET revoked_at = ?"
                " WHERE digest = ? AND kind = 'access' AND revoked_at IS NULL",
                (now, digest),
            )
            return cursor.rowcount == 1

        return await self.engine.write(write)

    async def list_oauth_grants(self, tenant_id: str, user_id: str) -> Sequence[LinkedApp]:
        """A user's active grants, newest first."""

        def read(conn: sqlite3.Connection) -> list[LinkedApp]:
            rows = conn.execute(
                "SELECT g.id, g.client_id, c.name, g.scopes, g.created_at, g.last_used_at"
                " FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id"
                " WHERE g.tenant_id = ? AND g.user_id = ? AND g.revoked_at IS NULL"
                " ORDER BY g.created_at DESC, g.rowid DESC",
                (tenant_id, user_id),
            ).fetchall()
            return [
                LinkedApp(
                    grant_id=row[0],
                    client_id=row[1],
                    client_name=row[2],
                    scopes=_scopes(row[3]),
                    created_at=row[4],
                    last_used_at=row[5],
                )
                for row in rows
            ]

        return await self.engine.read(read)

    async def touch_oauth_grants(self, last_used: Mapping[str, float]) -> None:
        """Record last-used times."""
        if not last_used:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE oauth_grants SET last_used_at = max(coalesce(last_used_at, 0), ?)"
                " WHERE id = ?",
                [(at, grant_id) for grant_id, at in last_used.items()],
            )

        await self.engine.write(write)

    async def purge_oauth(self, *, successors_before: float, expired_before: float) -> int:
        """Drop old successor pairs, expired codes and expired access tokens."""

        def write(conn: sqlite3.Connection) -> int:
            changed = conn.execute(
                "UPDATE oauth_tokens SET successor = NULL"
                " WHERE successor IS NOT NULL AND rotated_at < ?",
                (successors_before,),
            ).rowcount
            changed += conn.execute(
                "DELETE FROM oauth_codes WHERE expires_at < ?", (expired_before,)
            ).rowcount
            changed += conn.execute(
                "DELETE FROM oauth_tokens WHERE kind = 'access' AND expires_at < ?",
                (expired_before,),
            ).rowcount
            return changed

        return await self.engine.write(write)


def _client_values(client: OAuthClient) -> tuple[Any, ...]:
    return (
        client.id,
        client.name,
        json.dumps(list(client.redirect_uris)),
        client.token_endpoint_auth_method,
        " ".join(client.scopes),
        client.source,
        client.created_at,
        client.secret_digest,
    )


def _revoke_code_grant(conn: sqlite3.Connection, digest: str, now: float) -> bool:
    """Revoke the grant created by a used code's exchange; False when the code is unused."""
    row = conn.execute(
        "SELECT tenant_id, grant_id FROM oauth_codes WHERE digest = ? AND used_at IS NOT NULL",
        (digest,),
    ).fetchone()
    if row is None:
        return False
    if row[1] is not None:
        _revoke_grant(conn, row[0], row[1], now, "code reused")
    return True
