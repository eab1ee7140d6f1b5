"""SQLite implementation of the accounts part of the store."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

from staterelay.core.errors import Conflict, NotFound
from staterelay.core.records import Tenant, User
from staterelay.core.records.accounts import Invite, PasswordReset, Session
from staterelay.store.sqlite.engine import SQLiteEngine

_SESSION_COLUMNS = "id, tenant_id, user_id, created_at, last_seen_at, expires_at, ip, user_agent"
_INVITE_COLUMNS = "id, tenant_id, created_by, created_at, expires_at, used_at, used_by"
_RESET_COLUMNS = "id, tenant_id, user_id, created_by, created_at, expires_at, used_at"
_USER_COLUMNS = "id, tenant_id, email, is_admin, created_at, password_hash"
_SETUP_KEY = "setup_token_digest"


class SQLiteAccount:
    """``AccountStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

    # sessions ------------------------------------------------------------------------------
    async def create_session(self, session: Session, digest: str) -> Session:
        """Insert a session by digest."""

        def write(conn: sqlite3.Connection) -> Session:
            conn.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*dataclasses.astuple(session), digest),
            )
            return session

        return await self.engine.write(write)

    async def find_session(self, digest: str) -> tuple[Session, User] | None:
        """The session with this digest and its user."""

        def read(conn: sqlite3.Connection) -> tuple[Session, User] | None:
            row = conn.execute(
                "SELECT s.id, s.tenant_id, s.user_id, s.created_at, s.last_seen_at,"
                " s.expires_at, s.ip, s.user_agent,"
                " u.id, u.tenant_id, u.email, u.is_admin, u.created_at, u.password_hash"
                " FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id"
                " WHERE s.digest = ?",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            return Session(*row[:8]), _user(row[8:])

        return await self.engine.read(read)

    async def touch_session(self, tenant_id: str, session_id: str, at: float) -> None:
        """Move last-seen forward."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE sessions SET last_seen_at = max(last_seen_at, ?)"
                " WHERE tenant_id = ? AND id = ?",
                (at, tenant_id, session_id),
            )

        await self.engine.write(write)

    async def list_sessions(self, tenant_id: str, user_id: str) -> Sequence[Session]:
        """A user's sessions, most recently used first."""

        def read(conn: sqlite3.Connection) -> list[Session]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE tenant_id = ? AND user_id = ?"
                " ORDER BY last_seen_at DESC, created_at DESC, rowid DESC",
                (tenant_id, user_id),
            ).fetchall()
            return [Session(*row) for row in rows]

        return await self.engine.read(read)

    async def delete_session(
        self, tenant_id: str, session_id: str, *, user_id: str | None = None
    ) -> bool:
        """Delete one session."""

        def write(conn: sqlite3.Connection) -> bool:
            sql = "DELETE FROM sessions WHERE tenant_id = ? AND id = ?"
            params: tuple[str, ...] = (tenant_id, session_id)
            if user_id is not None:
                sql += " AND user_id = ?"
                params += (user_id,)
            return conn.execute(sql, params).rowcount == 1

        return await self.engine.write(write)

    async def prune_sessions(self, *, idle_before: float, now: float) -> int:
        """Delete idle and expired sessions."""

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM sessions WHERE last_seen_at < ? OR expires_at <= ?",
                (idle_before, now),
            ).rowcount

        return await self.engine.write(write)

    # passwords -----------------------------------------------------------------------------
    async def rehash_password(
        self, tenant_id: str, user_id: str, old_hash: str, new_hash: str
    ) -> bool:
        """Compare-and-set the password hash."""

        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE users SET password_hash = ?"
                    " WHERE tenant_id = ? AND id = ? AND password_hash = ?",
                    (new_hash, tenant_id, user_id, old_hash),
                ).rowcount
                == 1
            )

        return await self.engine.write(write)

    async def change_password(
        self, tenant_id: str, user_id: str, new_hash: str, *, keep_session_id: str | None
    ) -> int:
        """Set the hash and end every other session of the user."""

        def write(conn: sqlite3.Connection) -> int:
            updated = conn.execute(
                "UPDATE users SET password_hash = ? WHERE tenant_id = ? AND id = ?",
                (new_hash, tenant_id, user_id),
            ).rowcount
            if updated != 1:
                raise NotFound("no such user")
            return conn.execute(
                "DELETE FROM sessions WHERE tenant_id = ? AND user_id = ? AND id IS NOT ?",
                (tenant_id, user_id, keep_session_id),
            ).rowcount

        return await self.engine.write(write)

    # sign-up -------------------------------------------------------------------------------
    async def create_tenant_with_admin(self, tenant: Tenant, user: User) -> User:
        """Insert a tenant and its admin."""

        def write(conn: sqlite3.Connection) -> User:
            _insert_tenant(conn, tenant)
            stored = dataclasses.replace(user, tenant_id=tenant.id)
            insert_user(conn, stored)
            return stored

        return await self.engine.write(write)

    async def set_setup_token(self, digest: str | None) -> None:
        """Keep or forget the setup token digest."""

        def write(conn: sqlite3.Connection) -> None:
            if digest is None:
                conn.execute("DELETE FROM instance_meta WHERE key = ?", (_SETUP_KEY,))
                return
            conn.execute(
                "INSERT INTO instance_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_SETUP_KEY, digest),
            )

        await self.engine.write(write)

    async def setup_token_digest(self) -> str | None:
        """The stored setup token digest."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM instance_meta WHERE key = ?", (_SETUP_KEY,)
            ).fetchone()
            return str(row[0]) if row else None

        return await self.engine.read(read)

    async def create_first_admin(self, digest: str, tenant: Tenant, user: User) -> User:
        """Consume the setup token and create the first user."""

        def write(conn: sqlite3.Connection) -> User:
            consumed = conn.execute(
                "DELETE FROM instance_meta WHERE key = ? AND value = ?", (_SETUP_KEY, digest)
            ).rowcount
            if consumed != 1 or conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():
                raise NotFound("the setup link is not valid")
            row = conn.execute(
                "SELECT id FROM tenants ORDER BY created_at, rowid LIMIT 1"
            ).fetchone()
            if row is None:
                _insert_tenant(conn, tenant)
                tenant_id = tenant.id
            else:
                tenant_id = str(row[0])
            stored = dataclasses.replace(user, tenant_id=tenant_id)
            insert_user(conn, stored)
            return stored

        return await self.engine.write(write)

    # instance facts ------------------------------------------------------------------------
    async def instance_fact(self, key: str) -> str | None:
        """An instance-wide fact."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM instance_meta WHERE key = ?", (key,)).fetchone()
            return str(row[0]) if row else None

        return await self.engine.read(read)

    async def set_instance_fact(self, key: str, value: str | None) -> None:
        """Keep or forget an instance-wide fact."""

        def write(conn: sqlite3.Connection) -> None:
            if value is None:
                conn.execute("DELETE FROM instance_meta WHERE key = ?", (key,))
                return
            conn.execute(
                "INSERT INTO instance_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

        await self.engine.write(write)

    # password resets -----------------------------------------------------------------------
    async def create_password_reset(self, reset: PasswordReset, digest: str) -> PasswordReset:
        """Insert a reset link by digest."""

        def write(conn: sqlite3.Connection) -> PasswordReset:
            conn.execute(
                f"INSERT INTO password_resets ({_RESET_COLUMNS}, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*dataclasses.astuple(reset), digest),
            )
            return reset

        return await self.engine.write(write)

    async def find_password_reset(self, digest: str) -> PasswordReset | None:
        """The reset with this digest."""

        def read(conn: sqlite3.Connection) -> PasswordReset | None:
            row = conn.execute(
                f"SELECT {_RESET_COLUMNS} FROM password_resets WHERE digest = ?", (digest,)
            ).fetchone()
            return PasswordReset(*row) if row else None

        return await self.engine.read(read)

    async def use_password_reset(
        self, digest: str, tenant_id: str, new_hash: str, now: float
    ) -> User:
        """Use the link up, set the password, end every session of the user."""

        def write(conn: sqlite3.Connection) -> User:
            row = conn.execute(
                "UPDATE password_resets SET used_at = ? WHERE digest = ? AND tenant_id = ?"
                " AND used_at IS NULL AND expires_at > ? RETURNING user_id",
                (now, digest, tenant_id, now),
            ).fetchone()
            if row is None:
                raise NotFound("the reset link is not valid")
            user_id = str(row[0])
            _set_password(conn, tenant_id, user_id, new_hash)
            # Other links of the user stop working too: the password they would reset is new.
            conn.execute(
                "UPDATE password_resets SET used_at = ? WHERE tenant_id = ? AND user_id = ?"
                " AND used_at IS NULL",
                (now, tenant_id, user_id),
            )
            found = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE tenant_id = ? AND id = ?",
                (tenant_id, user_id),
            ).fetchone()
            return _user(found)

        return await self.engine.write(write)

    async def list_users(self, tenant_id: str | None = None) -> Sequence[User]:
        """Users, oldest first."""

        def read(conn: sqlite3.Connection) -> list[User]:
            sql = f"SELECT {_USER_COLUMNS} FROM users"
            params: tuple[str, ...] = ()
            if tenant_id is not None:
                sql += " WHERE tenant_id = ?"
                params = (tenant_id,)
            rows = conn.execute(sql + " ORDER BY created_at, rowid", params).fetchall()
            return [_user(row) for row in rows]

        return await self.engine.read(read)

    async def set_password(self, tenant_id: str, user_id: str, new_hash: str) -> int:
        """Set the hash and end every session of the user."""

        def write(conn: sqlite3.Connection) -> int:
            return _set_password(conn, tenant_id, user_id, new_hash)

        return await self.engine.write(write)

    # invites -------------------------------------------------------------------------------
    async def create_invite(self, invite: Invite, digest: str) -> Invite:
        """Insert an invite by digest."""

        def write(conn: sqlite3.Connection) -> Invite:
            conn.execute(
                f"INSERT INTO invites ({_INVITE_COLUMNS}, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*dataclasses.astuple(invite), digest),
            )
            return invite

        return await self.engine.write(write)

    async def find_invite(self, digest: str) -> Invite | None:
        """The invite with this digest."""

        def read(conn: sqlite3.Connection) -> Invite | None:
            row = conn.execute(
                f"SELECT {_INVITE_COLUMNS} FROM invites WHERE digest = ?", (digest,)
            ).fetchone()
            return Invite(*row) if row else None

        return await self.engine.read(read)

    async def accept_invite(self, digest: str, user: User, now: float) -> User:
        """Create the invited user and use up the invite."""

        def write(conn: sqlite3.Connection) -> User:
            row = conn.execute(
                "SELECT id FROM invites WHERE digest = ? AND tenant_id = ? AND used_at IS NULL"
                " AND expires_at > ?",
                (digest, user.tenant_id, now),
            ).fetchone()
            if row is None:
                raise NotFound("the invite link is not valid")
            insert_user(conn, user)
            conn.execute(
                "UPDATE invites SET used_at = ?, used_by = ? WHERE id = ?", (now, user.id, row[0])
            )
            return user

        return await self.engine.write(write)

    async def list_invites(self, tenant_id: str, *, now: float) -> Sequence[Invite]:
        """Pending invites of a tenant."""

        def read(conn: sqlite3.Connection) -> list[Invite]:
            rows = conn.execute(
                f"SELECT {_INVITE_COLUMNS} FROM invites WHERE tenant_id = ? AND used_at IS NULL"
                " AND expires_at > ? ORDER BY created_at DESC, rowid DESC",
                (tenant_id, now),
            ).fetchall()
            return [Invite(*row) for row in rows]

        return await self.engine.read(read)

    async def revoke_invite(self, tenant_id: str, invite_id: str) -> bool:
        """Delete an unused invite."""

        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "DELETE FROM invites WHERE tenant_id = ? AND id = ? AND used_at IS NULL",
                    (tenant_id, invite_id),
                ).rowcount
                == 1
            )

        return await self.engine.write(write)


def _user(row: Sequence[Any]) -> User:
    return User(
        id=row[0],
        tenant_id=row[1],
        email=row[2],
        is_admin=bool(row[3]),
        created_at=row[4],
        password_hash=row[5],
    )


def _set_password(conn: sqlite3.Connection, tenant_id: str, user_id: str, new_hash: str) -> int:
    """Set the hash and delete every session of the user; returns how many ended."""
    updated = conn.execute(
        "UPDATE users SET password_hash = ? WHERE tenant_id = ? AND id = ?",
        (new_hash, tenant_id, user_id),
    ).rowcount
    if updated != 1:
        raise NotFound("no such user")
    return conn.execute(
        "DELETE FROM sessions WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id)
    ).rowcount


def _insert_tenant(conn: sqlite3.Connection, tenant: Tenant) -> None:
    conn.execute(
        "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
        (tenant.id, tenant.name, tenant.created_at),
    )


def insert_user(conn: sqlite3.Connection, user: User) -> None:
    """Insert a user row; ``Conflict`` when the email is taken (in any letter case)."""
    try:
        conn.execute(
            "INSERT INTO users (id, tenant_id, email, email_key, password_hash, is_admin,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                user.id,
                user.tenant_id,
                user.email,
                user.email.casefold(),
                user.password_hash,
                int(user.is_admin),
                user.created_at,
            ),
        )
    except sqlite3.IntegrityError:
        raise Conflict("a user with this email exists", field="email") from None
