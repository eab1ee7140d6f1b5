"""``staterelay doctor`` on PostgreSQL: what a hosted deployment depends on, read-only.

One connection as the server's own role (``database.url``): can it connect, is the schema
current, does row-level security hold on every tenant table, is the role one that it binds,
how the outbox is doing, and whether this machine's clock agrees with the database's. Only
catalog queries and the ``sr_outbox_stats`` function run; nothing is written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources.abc import Traversable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from staterelay.ops.checks import Check, span
from staterelay.settings import Settings
from staterelay.store.postgres.engine import all_migrations, applied_versions

CONNECT_TIMEOUT = 5.0
OUTBOX_STUCK_SECONDS = 3600.0
CLOCK_SKEW_WARN = 1.0  # seconds; NTP keeps clocks far closer
CLOCK_SKEW_FAIL = 10.0  # leases are renewed every 20 s: skew near that breaks them
HOSTING_DOCS = "docs/hosting.md"

Probe = Callable[[asyncpg.Connection], Awaitable[Check]]


def postgres_checks(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    migrations: Sequence[Traversable] = (),
) -> list[Check]:
    """The PostgreSQL checks, in the order ``doctor`` prints them; ``migrations`` are the
    integrations' migration folders."""
    return asyncio.run(_checks(settings, clock, migrations))


async def _checks(
    settings: Settings, clock: Callable[[], float], folders: Sequence[Traversable]
) -> list[Check]:
    url = settings.database_url
    where = redacted(url)
    try:
        conn = await asyncpg.connect(
            url,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": "staterelay-doctor"},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return [
            Check(
                "database",
                "FAIL",
                f"cannot connect to {where}: {_describe(exc)}",
                "check database.url (host, port, database, role, password) and that the "
                "server runs: pg_isready -h HOST -p PORT",
            )
        ]
    try:
        version = await conn.fetchval("SHOW server_version")
        role = await conn.fetchval("SELECT current_user")
        checks = [Check("database", "OK", f"PostgreSQL {version} at {where}, as role {role}")]
        migrated = await _migrations(conn, settings, folders)
        checks.append(migrated)
        if migrated.status == "OK":
            checks.append(await _row_level_security(conn))
            checks.append(await _app_role(conn, settings))
            checks.append(await _outbox(conn, clock()))
        checks.append(await _clock_skew(conn, clock))
        return checks
    finally:
        await conn.close()


async def _migrations(
    conn: asyncpg.Connection, settings: Settings, folders: Sequence[Traversable]
) -> Check:
    done = await applied_versions(conn)
    known = [version for version, _, _ in all_migrations(folders)]
    pending = [version for version in known if version not in done]
    newer = sorted(done - set(known))
    if newer:
        return Check(
            "migrations",
            "FAIL",
            f"the database has migrations {', '.join(map(str, newer))}, newer than this "
            "StateRelay knows",
            "upgrade StateRelay to the version the other servers run",
        )
    if not pending:
        return Check("migrations", "OK", f"schema version {max(known)}, every migration applied")
    listed = ", ".join(map(str, pending))
    if settings.database.migrate_url:
        return Check(
            "migrations",
            "WARN",
            f"migrations {listed} not applied yet",
            "start a server: it applies them as the owner (database.migrate_url)",
        )
    return Check(
        "migrations",
        "FAIL",
        f"migrations {listed} not applied, and no database.migrate_url to apply them",
        "run `staterelay db migrate --url OWNER_URL` once, or set database.migrate_url "
        f"({HOSTING_DOCS}, Migrations)",
    )


async def _row_level_security(conn: asyncpg.Connection) -> Check:
    rows = await conn.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS has_policy"
        " FROM pg_class c"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'"
        "  AND NOT a.attisdropped"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
        " ORDER BY c.relname"
    )
    if not rows:
        return Check("tenancy", "FAIL", "no tenant table found in the public schema")
    loose = [
        f"{row['relname']} ({_missing(row)})"
        for row in rows
        if not (row["relrowsecurity"] and row["relforcerowsecurity"] and row["has_policy"])
    ]
    if loose:
        return Check(
            "tenancy",
            "FAIL",
            f"row-level security does not hold on {', '.join(loose)}",
            "run `staterelay db migrate --url OWNER_URL`; never ALTER TABLE ... DISABLE or "
            "NO FORCE ROW LEVEL SECURITY by hand",
        )
    return Check(
        "tenancy", "OK", f"enabled and forced, with a policy, on all {len(rows)} tenant tables"
    )


def _missing(row: asyncpg.Record) -> str:
    if not row["relrowsecurity"]:
        return "not enabled"
    if not row["relforcerowsecurity"]:
        return "not forced"
    return "no policy"


async def _app_role(conn: asyncpg.Connection, settings: Settings) -> Check:
    row = await conn.fetchrow(
        "SELECT r.rolname, r.rolsuper, r.rolbypassrls,"
        " (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid"
        "  AND c.relnamespace = 'public'::regnamespace) AS owned"
        " FROM pg_roles r WHERE r.rolname = current_user"
    )
    assert row is not None
    problems = []
    if row["rolsuper"]:
        problems.append("is a superuser")
    if row["rolbypassrls"]:
        problems.append("has BYPASSRLS")
    if row["owned"]:
        problems.append(f"owns {row['owned']} of the tables and functions")
    if not problems:
        return Check(
            "app role", "OK", f"{row['rolname']}: no superuser, no BYPASSRLS, owns nothing"
        )
    # One role for everything is a documented set-up for one household; several households
    # (open sign-up) must be kept apart by the database.
    hosted = settings.accounts.registration == "open"
    return Check(
        "app role",
        "FAIL" if hosted else "WARN",
        f"{row['rolname']} {' and '.join(problems)}: row-level security does not bind it"
        + (", and sign-up is open to many households" if hosted else ""),
        "connect as a role that owns nothing (LOGIN NOSUPERUSER NOBYPASSRLS) and let the "
        f"owner migrate (database.migrate_url); see {HOSTING_DOCS}, Two roles",
    )


async def _outbox(conn: asyncpg.Connection, now: float) -> Check:
    try:
        row = await conn.fetchrow("SELECT * FROM sr_outbox_stats()")
    except asyncpg.InsufficientPrivilegeError:
        return Check(
            "outbox",
            "FAIL",
            "this role may not read the delivery queue (sr_outbox_stats)",
            "run `staterelay db migrate --url OWNER_URL`, which grants the app role",
        )
    assert row is not None
    pending, dead, oldest = int(row["pending"]), int(row["dead"]), row["oldest_pending_at"]
    summary = f"{pending} pending, {dead} given up"
    if oldest is not None and now - float(oldest) > OUTBOX_STUCK_SECONDS:
        return Check(
            "outbox",
            "WARN",
            f"{summary}; the oldest pending delivery is {span(now - float(oldest))} old",
            "are the servers running? Check the destinations' delivery history "
            "(GET /api/v1/webhooks/{id}/deliveries) for their errors",
        )
    if dead:
        return Check(
            "outbox",
            "WARN",
            f"{summary}: {dead} deliveries failed on every retry",
            "see the failing webhooks' delivery history (GET /api/v1/webhooks/{id}/deliveries)",
        )
    return Check("outbox", "OK", summary)


async def _clock_skew(conn: asyncpg.Connection, clock: Callable[[], float]) -> Check:
    """This machine's clock against the database server's, allowing for the round trip."""
    sent = clock()
    database_time = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
    received = clock()
    skew = database_time - (sent + received) / 2
    direction = "behind" if skew > 0 else "ahead of"
    text = f"this machine's clock is {abs(skew):.2f} s {direction} the database server's"
    fix = (
        "keep every server in sync with NTP (timedatectl set-ntp true): leases, retries "
        "and token lifetimes compare their times"
    )
    if abs(skew) > CLOCK_SKEW_FAIL:
        return Check("clock", "FAIL", text, fix)
    if abs(skew) > CLOCK_SKEW_WARN:
        return Check("clock", "WARN", text, fix)
    return Check(
        "clock", "OK", f"this machine's clock is within {abs(skew):.2f} s of the database's"
    )


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text or type(error).__name__
