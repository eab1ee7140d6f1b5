"""PostgreSQL plumbing: the connection pool, tenant-bound transactions and migrations.

Every tenant table has row-level security that only shows the rows of the tenant named by
the transaction-local setting ``app.tenant_id``. ``PostgresEngine.tenant`` opens a
transaction and sets it first; ``PostgresEngine.instance`` opens one with no tenant, for
instance-wide tables and the narrow ``SECURITY DEFINER`` functions (``sr_*``) that make the
few lookups across tenants. A statement on a tenant table without a tenant fails (the
setting does not exist) or sees nothing (it reads ``''`` on a connection that had one).

Migrations are applied by the owner of the tables (``migrate_url``, else the app's own URL)
under a transaction-scoped advisory lock, so replicas starting together apply each once.
The owner then grants the app role what it needs: DML on the tables, ``EXECUTE`` on the
functions, nothing else.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from staterelay.core.errors import StorageFull
from staterelay.core.records import PoolStats
from staterelay.core.storage.migrations import Migration, merged
from staterelay.jsoncodec import decode, encode_sorted_text

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    """A connection of the pool or one of its own (the migrator's)."""

_LOGGER = logging.getLogger(__name__)

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
# Any constant works; it only has to be the same in every replica ("srmigrat" in ASCII).
MIGRATION_LOCK = 0x7372_6D69_6772_6174
SET_TENANT = "SELECT set_config('app.tenant_id', $1, true)"
FULL_LOG_EVERY = 60.0

_NUL_ESCAPE = re.compile(r"(\\+)u0000")


def dumps(value: Any) -> str:
    """JSON text for a ``jsonb`` value; a NUL character (``jsonb`` refuses it) becomes U+FFFD."""
    text = encode_sorted_text(value)
    if "u0000" in text:
        # Only an odd run of backslashes is an escape; an even one is escaped backslashes.
        text = _NUL_ESCAPE.sub(
            lambda m: m.group(1) + ("ufffd" if len(m.group(1)) % 2 else "u0000"), text
        )
    return text


def clean_text(value: str | None) -> str | None:
    """Text from outside (an error message, a header) without NUL, which ``text`` refuses."""
    return None if value is None else value.replace("\x00", "\ufffd")


def rowcount(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _init_connection(conn: Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=dumps, decoder=decode, schema="pg_catalog", format="text"
        )


def all_migrations(folders: Sequence[Traversable] = ()) -> list[Migration]:
    """The bundled migrations and those of integrations' ``folders``, in version order."""
    return merged(migration_files(), folders, "postgres")


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled PostgreSQL migration, in order."""
    folder = resources.files("staterelay.store").joinpath("migrations/postgres")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def applied_versions(conn: Connection) -> set[int]:
    """Versions recorded in ``schema_migrations`` (none when the table does not exist)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}


async def pending_migrations(conn: Connection, folders: Sequence[Traversable] = ()) -> list[int]:
    """Versions of migrations (bundled and of ``folders``) not yet applied."""
    done = await applied_versions(conn)
    return [version for version, _, _ in all_migrations(folders) if version not in done]


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date with the credentials at hand."""


async def migrate(
    conn: Connection, *, app_role: str | None, folders: Sequence[Traversable] = ()
) -> list[int]:
    """Apply pending migrations (bundled and of ``folders``) in one transaction and grant
    ``app_role`` its privileges.

    Runs as the owner of the tables. Replicas starting together queue on the advisory lock;
    the first applies, the others find nothing left to do. Returns the versions applied.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at double precision NOT NULL)"
        )
        done = await applied_versions(conn)
        applied: list[int] = []
        for version, name, sql in all_migrations(folders):
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                version,
                name,
                time.time(),
            )
            applied.append(version)
            _LOGGER.info("applied migration %s", name)
        owner = await conn.fetchval("SELECT current_user")
        if app_role is not None and app_role != owner:
            await grant_app_role(conn, app_role)
    return applied


async def grant_app_role(conn: Connection, role: str) -> None:
    """Give the app role DML on StateRelay's tables and ``EXECUTE`` on its functions.

    Row-level security still limits it to the tenant each transaction names; it owns
    nothing, so it can neither alter a table nor switch a policy off.
    """
    quoted = await conn.fetchval("SELECT quote_ident($1)", role)
    role_ok = await conn.fetchval(
        "SELECT NOT rolsuper AND NOT rolbypassrls FROM pg_roles WHERE rolname = $1", role
    )
    if role_ok is None:
        raise MigrationError(f"the app role {role} does not exist: create it first")
    if not role_ok:
        _LOGGER.warning(
            "the app role %s is a superuser or has BYPASSRLS: row-level security will not"
            " separate tenants for it",
            role,
        )
    await conn.execute(
        f"GRANT USAGE ON SCHEMA public TO {quoted};"
        f" GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted};"
        f" REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {quoted};"
        f" GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted};"
        f" GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {quoted};"
    )


async def migrate_url(
    url: str, *, app_role: str | None, folders: Sequence[Traversable] = ()
) -> list[int]:
    """Connect to ``url`` (the owner's), migrate, grant ``app_role`` and disconnect.

    ``MigrationError`` says what went wrong when the server refuses or cannot be reached.
    """
    try:
        conn = await asyncpg.connect(
            url, server_settings={"application_name": "staterelay-migrate"}
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise MigrationError(f"cannot connect to the database to migrate it: {exc}") from None
    try:
        return await migrate(conn, app_role=app_role, folders=folders)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migrating the database failed: {exc}") from None
    finally:
        await conn.close()


class PostgresEngine:
    """Owns the asyncpg pool; hands out tenant-bound and instance transactions."""

    def __init__(
        self,
        url: str,
        *,
        migrate_url: str | None = None,
        pool_size: int = POOL_MAX_SIZE,
        migrations: Sequence[Traversable] = (),
    ) -> None:
        self.url = url
        self.migrations = tuple(migrations)
        """Integrations' migration folders, applied with the bundled migrations."""
        self.migrate_url = migrate_url if migrate_url and migrate_url != url else None
        self.pool_size = pool_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self.role: str = ""
        self.storage_full_errors = 0
        self._full_logged_at = -FULL_LOG_EVERY

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """The open pool."""
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    def pool_stats(self) -> PoolStats:
        """Connections of the pool: open, the most allowed, and borrowed."""
        pool = self._pool
        if pool is None:
            return PoolStats(size=0, max_size=self.pool_size, in_use=0, waiting=None)
        size = pool.get_size()
        return PoolStats(
            size=size,
            max_size=pool.get_max_size(),
            in_use=size - pool.get_idle_size(),
            waiting=None,
        )

    async def open(self) -> None:
        """Connect, bring the schema up to date and check it is complete."""
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=min(POOL_MIN_SIZE, self.pool_size),
            max_size=self.pool_size,
            init=_init_connection,
            reset=_keep_session,
            server_settings={"application_name": "staterelay", "standard_conforming_strings": "on"},
        )
        try:
            async with self._pool.acquire() as conn:
                self.role = str(await conn.fetchval("SELECT current_user"))
                pending = await pending_migrations(conn, self.migrations)
            if self.migrate_url is not None:
                await migrate_url(self.migrate_url, app_role=self.role, folders=self.migrations)
            elif pending:
                await self._migrate_as_app(pending)
        except BaseException:
            await self.close()
            raise

    async def _migrate_as_app(self, pending: list[int]) -> None:
        """No owner URL: the app's role must be the owner itself (a one-role setup)."""
        async with self.pool.acquire() as conn:
            try:
                await migrate(conn, app_role=None, folders=self.migrations)
            except asyncpg.InsufficientPrivilegeError as exc:
                raise MigrationError(
                    f"the database needs migrations {', '.join(map(str, pending))} and the role"
                    f" {self.role} may not apply them ({exc}): set database.migrate_url to the"
                    " table owner's URL or run `staterelay db migrate --url OWNER_URL`"
                ) from None

    async def close(self) -> None:
        """Close every connection of the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def tenant(self, tenant_id: str, *, readonly: bool = False) -> AsyncIterator[Connection]:
        """A transaction that sees and may write only ``tenant_id``'s rows."""
        # BEGIN and the tenant travel in one round trip: the simple query protocol takes
        # several statements but no parameters, so the id goes as a quoted literal.
        begin = f"{_BEGIN[readonly]}; SELECT set_config('app.tenant_id', {quote(tenant_id)}, true)"
        try:
            async with self.pool.acquire() as conn, _transaction(conn, begin):
                yield conn
        except asyncpg.DiskFullError as exc:
            raise self._disk_full(exc) from exc

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Connection]:
        """A connection for one statement that is its own transaction: one round trip.

        For the ``sr_*`` functions that set the tenant themselves (transaction-local, so the
        setting ends with the statement).
        """
        try:
            async with self.pool.acquire() as conn:
                yield conn
        except asyncpg.DiskFullError as exc:
            raise self._disk_full(exc) from exc

    @asynccontextmanager
    async def instance(self, *, readonly: bool = False) -> AsyncIterator[Connection]:
        """A transaction with no tenant: instance tables and ``sr_*`` functions only."""
        try:
            async with self.pool.acquire() as conn, _transaction(conn, _BEGIN[readonly]):
                yield conn
        except asyncpg.DiskFullError as exc:
            raise self._disk_full(exc) from exc

    def _disk_full(self, error: asyncpg.DiskFullError) -> StorageFull:
        """SQLSTATE 53100: the transaction was rolled back; callers get a domain error."""
        self.storage_full_errors += 1
        now = time.monotonic()
        if now - self._full_logged_at >= FULL_LOG_EVERY:
            # Once a minute at most: a full disk fails every write until space returns.
            self._full_logged_at = now
            _LOGGER.error(
                "writes fail for lack of disk space on the database server (%d so far): %s",
                self.storage_full_errors,
                error,
            )
        return StorageFull(
            "the database has no room for this change (its disk is full); nothing of it was kept"
        )


_BEGIN = {False: "BEGIN", True: "BEGIN READ ONLY"}


@asynccontextmanager
async def _transaction(conn: Connection, begin: str) -> AsyncIterator[None]:
    """Run ``begin`` (which opens a transaction); COMMIT after the block, ROLLBACK on error."""
    await conn.execute(begin)
    try:
        yield
    except BaseException:
        # Should the ROLLBACK itself fail, the pool rolls back again or drops the connection.
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def quote(value: str) -> str:
    """A string literal for SQL text (``standard_conforming_strings`` is on: see ``open``)."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot be sent to PostgreSQL")
    return "'" + value.replace("'", "''") + "'"


async def _keep_session(conn: Connection) -> None:
    """The pool's reset between borrowers: nothing beyond asyncpg's own ROLLBACK.

    Every setting StateRelay makes is transaction-local (``set_config(..., true)``) and no
    transaction outlives its borrower, so the default ``RESET ALL``-and-more would only
    cost a round trip per transaction.
    """


async def bind_tenant(conn: Connection, tenant_id: str) -> None:
    """Switch the open transaction to another tenant (work on rows of several tenants)."""
    await conn.execute(SET_TENANT, tenant_id)
