"""PostgreSQL for tests: a fresh database per test, owned and migrated by one role, used by
another that owns nothing (as a hosted deployment runs).

The server is the one on 127.0.0.1:5432 (trust authentication, superuser ``postgres``);
tests that need it skip, saying so, where none answers. CI has one and fails on skips.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache

import asyncpg

from staterelay.store import open_store
from tests.skips import unavailable

HOST, PORT = "127.0.0.1", 5432
ADMIN_URL = f"postgresql://postgres@{HOST}:{PORT}/postgres"
OWNER_ROLE = "staterelay_owner"
APP_ROLE = "staterelay_app"
SKIP_REASON = f"no PostgreSQL server answers on {HOST}:{PORT}"


@cache
def postgres_available() -> bool:
    """True when something accepts connections on the PostgreSQL port."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    """Skip the calling test, with the reason, when there is no server (fail on CI)."""
    if not postgres_available():
        unavailable(SKIP_REASON)


@dataclass(frozen=True)
class ScratchDatabase:
    """A throwaway database and the URLs of its roles."""

    name: str

    def url(self, role: str) -> str:
        """The URL of this database for ``role``."""
        return f"postgresql://{role}@{HOST}:{PORT}/{self.name}"

    @property
    def owner_url(self) -> str:
        """The owner's URL: migrations run as this role."""
        return self.url(OWNER_ROLE)

    @property
    def app_url(self) -> str:
        """The app role's URL: the store connects as this role."""
        return self.url(APP_ROLE)

    @property
    def admin_url(self) -> str:
        """The superuser's URL, for looking at the catalog."""
        return self.url("postgres")


async def _ensure_role(admin: asyncpg.Connection, role: str) -> None:
    # LOGIN, and none of the attributes that would let a role past row-level security.
    # The roles are shared by every test run on the server: they are altered only when
    # wrong, since two runs altering one role at once fail ("tuple concurrently updated").
    attributes = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB"
    row = await admin.fetchrow(
        "SELECT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls AND NOT rolcreatedb AS right"
        " FROM pg_roles WHERE rolname = $1",
        role,
    )
    if row is not None and row["right"]:
        return
    try:
        await admin.execute(f"CREATE ROLE {role} {attributes}")
    except asyncpg.DuplicateObjectError:
        await admin.execute(f"ALTER ROLE {role} {attributes}")


@asynccontextmanager
async def fresh_database() -> AsyncIterator[ScratchDatabase]:
    """Create an empty database owned by the owner role; drop it afterwards."""
    require_postgres()
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        for role in (OWNER_ROLE, APP_ROLE):
            await _ensure_role(admin, role)
        database = ScratchDatabase(f"staterelay_test_{uuid.uuid4().hex[:16]}")
        await admin.execute(f"CREATE DATABASE {database.name} OWNER {OWNER_ROLE}")
        try:
            yield database
        finally:
            await admin.execute(f"DROP DATABASE {database.name} WITH (FORCE)")
    finally:
        await admin.close()


@asynccontextmanager
async def migrated_database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database migrated once by its owner, as ``staterelay db migrate`` would."""
    async with fresh_database() as fresh:
        store = open_store(fresh.app_url, migrate_url=fresh.owner_url)
        await store.open()
        await store.close()
        yield fresh
