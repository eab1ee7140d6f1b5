"""PostgreSQL implementation of the accounts part of the store."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from staterelay.core.errors import Conflict, NotFound
from staterelay.core.records import Tenant, User
from staterelay.core.records.accounts import Invite, PasswordReset, Session
from staterelay.store.postgres.engine import PostgresEngine, bind_tenant, clean_text, rowcount

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

_SESSION_COLUMNS = "id, tenant_id, user_id, created_at, last_seen_at, expires_at, ip, user_agent"
_INVITE_COLUMNS = "id, tenant_id, created_by, created_at, expires_at, used_at, used_by"
_RESET_COLUMNS = "id, tenant_id, user_id, created_by, created_at, expires_at, used_at"
_USER_COLUMNS = "id, tenant_id, email, is_admin, created_at, password_hash"
_SETUP_KEY = "setup_token_digest"


class PostgresAccount:
    """``AccountStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    # sessions ------------------------------------------------------------------------------
    async def create_session(self, session: Session, digest: str) -> Session:
        """Insert a session by digest."""
        async with self.engine.tenant(session.tenant_id) as conn:
            await conn.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}, digest)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                session.id,
                session.tenant_id,
                session.user_id,
                session.created_at,
                session.last_seen_at,
                session.expires_at,
                clean_text(session.ip),
                clean_text(session.user_agent),
                digest,
            )
        return session

    async def find_session(self, digest: str) -> tuple[Session, User] | None:
        """The session with this digest and its user, whatever the tenant."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow("SELECT * FROM sr_session_by_digest($1)", digest)
        if row is None:
            return None
        values = tuple(row)
        return Session(*values[:8]), user(values[8:])

    async def touch_session(self, tenant_id: str, session_id: str, at: float) -> None:
        """Move last-seen forward."""
        async with self.engine.tenant(tenant_id) as conn:
            await conn.execute(
                "UPDATE sessions SET last_seen_at = greatest(last_seen_at, $1)"
                " WHERE tenant_id = $2 AND id = $3",
                at,
                tenant_id,
                session_id,
            )

    async def list_sessions(self, tenant_id: str, user_id: str) -> Sequence[Session]:
        """A user's sessions, most recently used first."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND user_id = $2"
                " ORDER BY last_seen_at DESC, created_at DESC, seq DESC",
                tenant_id,
                user_id,
            )
        return [Session(*row) for row in rows]

    async def delete_session(
        self, tenant_id: str, session_id: str, *, user_id: str | None = None
    ) -> bool:
        """Delete one session."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "DELETE FROM sessions WHERE tenant_id = $1 AND id = $2"
                " AND ($3::text IS NULL OR user_id = $3)",
                tenant_id,
                session_id,
                user_id,
            )
        return rowcount(status) == 1

    async def prune_sessions(self, *, idle_before: float, now: float) -> int:
        """Delete idle and expired sessions of every tenant."""
        async with self.engine.instance() as conn:
            return int(await conn.fetchval("SELECT sr_prune_sessions($1, $2)", idle_before, now))

    # passwords -----------------------------------------------------------------------------
    async def rehash_password(
        self, tenant_id: str, user_id: str, old_hash: str, new_hash: str
    ) -> bool:
        """Compare-and-set the password hash."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE users SET password_hash = $1"
                " WHERE tenant_id = $2 AND id = $3 AND password_hash = $4",
                new_hash,
                tenant_id,
                user_id,
                old_hash,
            )
        return rowcount(status) == 1

    async def change_password(
        self, tenant_id: str, user_id: str, new_hash: str, *, keep_session_id: str | None
    ) -> int:
        """Set the hash and end every other session of the user."""
        async with self.engine.tenant(tenant_id) as conn:
            updated = rowcount(
                await conn.execute(
                    "UPDATE users SET password_hash = $1 WHERE tenant_id = $2 AND id = $3",
                    new_hash,
                    tenant_id,
                    user_id,
                )
            )
            if updated != 1:
                raise NotFound("no such user")
            return rowcount(
                await conn.execute(
                    "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2"
                    " AND id IS DISTINCT FROM $3",
                    tenant_id,
                    user_id,
                    keep_session_id,
                )
            )

    # sign-up -------------------------------------------------------------------------------
    async def create_tenant_with_admin(self, tenant: Tenant, user: User) -> User:
        """Insert a tenant and its admin."""
        stored = dataclasses.replace(user, tenant_id=tenant.id)
        async with self.engine.tenant(tenant.id) as conn:
            await insert_tenant(conn, tenant)
            await insert_user(conn, stored)
        return stored

    async def set_setup_token(self, digest: str | None) -> None:
        """Keep or forget the setup token digest."""
        async with self.engine.instance() as conn:
            if digest is None:
                await conn.execute("DELETE FROM instance_meta WHERE key = $1", _SETUP_KEY)
                return
            await conn.execute(
                "INSERT INTO instance_meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                _SETUP_KEY,
                digest,
            )

    async def setup_token_digest(self) -> str | None:
        """The stored setup token digest."""
        async with self.engine.instance(readonly=True) as conn:
            value = await conn.fetchval(
                "SELECT value FROM instance_meta WHERE key = $1", _SETUP_KEY
            )
        return None if value is None else str(value)

    async def create_first_admin(self, digest: str, tenant: Tenant, user: User) -> User:
        """Consume the setup token and create the first user."""
        async with self.engine.instance() as conn:
            # Deleting the token row locks it: of two concurrent calls one consumes it.
            consumed = rowcount(
                await conn.execute(
                    "DELETE FROM instance_meta WHERE key = $1 AND value = $2", _SETUP_KEY, digest
                )
            )
            if consumed != 1 or await conn.fetchval("SELECT sr_count_users()"):
                raise NotFound("the setup link is not valid")
            tenant_id = await conn.fetchval("SELECT id FROM sr_first_tenant()")
            await bind_tenant(conn, tenant_id or tenant.id)
            if tenant_id is None:
                await insert_tenant(conn, tenant)
                tenant_id = tenant.id
            stored = dataclasses.replace(user, tenant_id=tenant_id)
            await insert_user(conn, stored)
        return stored

    # instance facts ------------------------------------------------------------------------
    async def instance_fact(self, key: str) -> str | None:
        """An instance-wide fact."""
        async with self.engine.instance(readonly=True) as conn:
            value = await conn.fetchval("SELECT value FROM instance_meta WHERE key = $1", key)
        return None if value is None else str(value)

    async def set_instance_fact(self, key: str, value: str | None) -> None:
        """Keep or forget an instance-wide fact."""
        async with self.engine.instance() as conn:
            if value is None:
                await conn.execute("DELETE FROM instance_meta WHERE key = $1", key)
                return
            await conn.execute(
                "INSERT INTO instance_meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                key,
                value,
            )

    # password resets -----------------------------------------------------------------------
    async def create_password_reset(self, reset: PasswordReset, digest: str) -> PasswordReset:
        """Insert a reset link by digest."""
        async with self.engine.tenant(reset.tenant_id) as conn:
            await conn.execute(
                f"INSERT INTO password_resets ({_RESET_COLUMNS}, digest)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *dataclasses.astuple(reset),
                digest,
            )
        return reset

    async def find_password_reset(self, digest: str) -> PasswordReset | None:
        """The reset with this digest, whatever the tenant."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_RESET_COLUMNS} FROM sr_password_reset_by_digest($1)", digest
            )
        return None if row is None else PasswordReset(*row)

    async def use_password_reset(
        self, digest: str, tenant_id: str, new_hash: str, now: float
    ) -> User:
        """Use the link up, set the password, end every session of the user."""
        async with self.engine.tenant(tenant_id) as conn:
            user_id = await conn.fetchval(
                "UPDATE password_resets SET used_at = $1 WHERE digest = $2 AND tenant_id = $3"
                " AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
                now,
                digest,
                tenant_id,
            )
            if user_id is None:
                raise NotFound("the reset link is not valid")
            await _set_password(conn, tenant_id, user_id, new_hash)
            await conn.execute(
                "UPDATE password_resets SET used_at = $1 WHERE tenant_id = $2 AND user_id = $3"
                " AND used_at IS NULL",
                now,
                tenant_id,
                user_id,
            )
            row = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                user_id,
            )
        assert row is not None  # the update above found the user in this transaction
        return user(row)

    async def list_users(self, tenant_id: str | None = None) -> Sequence[User]:
        """Users of one tenant, or of the instance, oldest first."""
        if tenant_id is None:
            async with self.engine.instance(readonly=True) as conn:
                rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM sr_list_users()")
        else:
            async with self.engine.tenant(tenant_id, readonly=True) as conn:
                rows = await conn.fetch(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE tenant_id = $1"
                    " ORDER BY created_at, id",
                    tenant_id,
                )
        return [user(row) for row in rows]

    async def set_password(self, tenant_id: str, user_id: str, new_hash: str) -> int:
        """Set the hash and end every session of the user."""
        async with self.engine.tenant(tenant_id) as conn:
            return await _set_password(conn, tenant_id, user_id, new_hash)

    # invites -------------------------------------------------------------------------------
    async def create_invite(self, invite: Invite, digest: str) -> Invite:
        """Insert an invite by digest."""
        async with self.engine.tenant(invite.tenant_id) as conn:
            await conn.execute(
                f"INSERT INTO invites ({_INVITE_COLUMNS}, digest)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *dataclasses.astuple(invite),
                digest,
            )
        return invite

    async def find_invite(self, digest: str) -> Invite | None:
        """The invite with this digest, whatever the tenant."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_INVITE_COLUMNS} FROM sr_invite_by_digest($1)", digest
            )
        return None if row is None else Invite(*row)

    async def accept_invite(self, digest: str, user: User, now: float) -> User:
        """Create the invited user and use up the invite."""
        async with self.engine.tenant(user.tenant_id) as conn:
            invite_id = await conn.fetchval(
                "SELECT id FROM invites WHERE digest = $1 AND tenant_id = $2"
                " AND used_at IS NULL AND expires_at > $3 FOR UPDATE",
                digest,
                user.tenant_id,
                now,
            )
            if invite_id is None:
                raise NotFound("the invite link is not valid")
            await insert_user(conn, user)
            await conn.execute(
                "UPDATE invites SET used_at = $1, used_by = $2 WHERE tenant_id = $3 AND id = $4",
                now,
                user.id,
                user.tenant_id,
                invite_id,
            )
        return user

    async def list_invites(self, tenant_id: str, *, now: float) -> Sequence[Invite]:
        """Pending invites of a tenant."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_INVITE_COLUMNS} FROM invites WHERE tenant_id = $1 AND used_at IS NULL"
                " AND expires_at > $2 ORDER BY created_at DESC, seq DESC",
                tenant_id,
                now,
            )
        return [Invite(*row) for row in rows]

    async def revoke_invite(self, tenant_id: str, invite_id: str) -> bool:
        """Delete an unused invite."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "DELETE FROM invites WHERE tenant_id = $1 AND id = $2 AND used_at IS NULL",
                tenant_id,
                invite_id,
            )
        return rowcount(status) == 1


async def _set_password(conn: Connection, tenant_id: str, user_id: str, new_hash: str) -> int:
    """Set the hash and delete every session of the user; returns how many ended."""
    updated = rowcount(
        await conn.execute(
            "UPDATE users SET password_hash = $1 WHERE tenant_id = $2 AND id = $3",
            new_hash,
            tenant_id,
            user_id,
        )
    )
    if updated != 1:
        raise NotFound("no such user")
    return rowcount(
        await conn.execute(
            "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id
        )
    )


def user(row: asyncpg.Record | Sequence[Any]) -> User:
    """A ``User`` from (id, tenant_id, email, is_admin, created_at, password_hash)."""
    return User(
        id=row[0],
        tenant_id=row[1],
        email=row[2],
        is_admin=bool(row[3]),
        created_at=row[4],
        password_hash=row[5],
    )


async def insert_tenant(conn: Connection, tenant: Tenant) -> None:
    """Insert a tenant row (the transaction must be bound to that tenant)."""
    await conn.execute(
        "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
        tenant.id,
        tenant.name,
        tenant.created_at,
    )


async def insert_user(conn: Connection, user: User) -> None:
    """Insert a user row; ``Conflict`` when the email is taken (in any letter case)."""
    try:
        await conn.execute(
            f"INSERT INTO users ({_USER_COLUMNS}, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            user.id,
            user.tenant_id,
            user.email,
            user.is_admin,
            user.created_at,
            user.password_hash,
            user.email.casefold(),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("a user with this email exists", field="email") from None
