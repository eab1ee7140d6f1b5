"""``staterelay doctor`` on PostgreSQL: each check's OK path and each failure (issue 15).

A fresh database per test on this machine's server, migrated by its owner; the damage a
test needs (row-level security switched off, a role with BYPASSRLS, no migrations) is done
as the superuser, behind StateRelay's back, as an operator's mistake would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from staterelay.app.assemble import build_core
from staterelay.cli import cli
from staterelay.core.crypto import load_or_create_secret
from staterelay.ops.doctor import Check, run_checks
from staterelay.settings import AccountsSettings, DatabaseSettings, Settings, load_settings
from tests.conftest import make_account
from tests.postgres_support import (
    APP_ROLE,
    ScratchDatabase,
    fresh_database,
    migrated_database,
)

HEALTHY = ["config", "data", "database", "migrations", "tenancy", "app", "outbox", "clock"]


def hold(manager: Any) -> Iterator[ScratchDatabase]:
    """Enter an async context manager of ``postgres_support`` from synchronous code."""
    loop = asyncio.new_event_loop()
    try:
        database: ScratchDatabase = loop.run_until_complete(manager.__aenter__())
        try:
            yield database
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()


@pytest.fixture
def database() -> Iterator[ScratchDatabase]:
    """A migrated database (the tests are synchronous: doctor runs its own event loop)."""
    yield from hold(migrated_database())


def superuser(database: ScratchDatabase, *statements: str) -> None:
    """Run statements as the superuser in the test's database."""

    async def run() -> None:
        conn = await asyncpg.connect(database.admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def settings_for(tmp_path: Path, url: str, **changes: Any) -> Settings:
    """Settings of a server using ``url``, data directory in ``tmp_path``."""
    base = load_settings(data_dir=tmp_path / "data", environ={})
    return dataclasses.replace(base, database=DatabaseSettings(url=url), **changes)


def checks(settings: Settings, clock: Callable[[], float] = time.time) -> dict[str, Check]:
    """Every check doctor makes, by name."""
    return {check.name: check for check in run_checks(settings, None, clock=clock)}


def test_a_healthy_database_is_all_ok_and_the_command_exits_0(
    tmp_path: Path, database: ScratchDatabase
) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    result = CliRunner().invoke(
        cli,
        ["doctor", "--data-dir", str(tmp_path / "data")],
        env={"STATERELAY_DATABASE_URL": database.app_url},
    )
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    for name in HEALTHY:
        assert lines[name].startswith("OK "), result.stdout
    assert f"as role {APP_ROLE}" in lines["database"]
    assert "enabled and forced, with a policy, on all" in lines["tenancy"]
    assert "owns nothing" in lines["app"]
    assert "0 pending, 0 given up" in lines["outbox"]


def test_an_unreachable_database_fails_and_the_command_exits_1(tmp_path: Path) -> None:
    """The issue's case: before, doctor said "WARN not SQLite" and exited 0."""
    url = "postgresql://staterelay_app:secret-pw@127.0.0.1:1/staterelay"
    result = CliRunner().invoke(
        cli, ["doctor", "--data-dir", str(tmp_path / "data")], env={"STATERELAY_DATABASE_URL": url}
    )
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.split()[1] == "database"]
    assert line.startswith("FAIL  database    cannot connect to postgresql://staterelay_app:***@")
    assert "secret-pw" not in result.stdout
    assert "pg_isready" in result.stdout


def test_missing_migrations_fail_without_a_migrate_url_and_warn_with_one(tmp_path: Path) -> None:
    for database in hold(fresh_database()):
        found = checks(settings_for(tmp_path, database.app_url))
        assert found["migrations"].status == "FAIL"
        assert "migrations 1, 2, 3" in found["migrations"].message
        assert "staterelay db migrate" in (found["migrations"].fix or "")
        with_owner = dataclasses.replace(
            settings_for(tmp_path, database.app_url),
            database=DatabaseSettings(url=database.app_url, migrate_url=database.owner_url),
        )
        assert checks(with_owner)["migrations"].status == "WARN"


def test_row_level_security_off_or_not_forced_fails(
    tmp_path: Path, database: ScratchDatabase
) -> None:
    superuser(
        database,
        "ALTER TABLE devices NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE webhooks DISABLE ROW LEVEL SECURITY",
    )
    found = checks(settings_for(tmp_path, database.app_url))["tenancy"]
    assert found.status == "FAIL"
    assert "devices (not forced)" in found.message
    assert "webhooks (not enabled)" in found.message
    assert "activity_log" not in found.message


def test_an_app_role_that_owns_the_tables_fails_when_households_sign_up(
    tmp_path: Path, database: ScratchDatabase
) -> None:
    """The owner as the server's role: FAIL with open sign-up, WARN for one household."""
    hosted = settings_for(
        tmp_path, database.owner_url, accounts=AccountsSettings(registration="open")
    )
    found = checks(hosted)["app role"]
    assert found.status == "FAIL"
    assert "owns" in found.message
    assert "Two roles" in (found.fix or "")
    household = checks(settings_for(tmp_path, database.owner_url))["app role"]
    assert household.status == "WARN"


def test_an_app_role_with_bypassrls_fails(tmp_path: Path, database: ScratchDatabase) -> None:
    role = f"srdoctor_bypass_{uuid.uuid4().hex[:10]}"
    superuser(database, f"CREATE ROLE {role} LOGIN BYPASSRLS IN ROLE {APP_ROLE}")
    try:
        hosted = settings_for(
            tmp_path, database.url(role), accounts=AccountsSettings(registration="open")
        )
        found = checks(hosted)["app role"]
        assert found.status == "FAIL"
        assert "has BYPASSRLS" in found.message
    finally:
        superuser(database, f"DROP ROLE {role}")


def test_clock_skew_against_the_database_fails_beyond_ten_seconds(
    tmp_path: Path, database: ScratchDatabase
) -> None:
    settings = settings_for(tmp_path, database.app_url)
    assert checks(settings)["clock"].status == "OK"
    warned = checks(settings, clock=lambda: time.time() - 5)["clock"]
    assert warned.status == "WARN"
    assert "behind the database server's" in warned.message
    failed = checks(settings, clock=lambda: time.time() + 3600)["clock"]
    assert failed.status == "FAIL"
    assert "ahead of the database server's" in failed.message
    assert "NTP" in (failed.fix or "")


def test_a_stuck_outbox_is_reported(tmp_path: Path, database: ScratchDatabase) -> None:
    """Deliveries to a receiver that is down wait; an hour on, doctor says so."""
    settings = settings_for(tmp_path, database.app_url)

    async def queue_a_delivery() -> None:
        core = build_core(settings, instance_secret=load_or_create_secret(tmp_path / "key"))
        await core.store.open()
        try:
            account = await make_account(core, "stuck@example.com")
            principal = await core.auth.authenticate(account.key)
            await core.webhooks.create(
                principal,
                {"url": "https://hooks.example.com/x", "event_types": ["device.created"]},
            )
            await core.devices.create(principal, type="switch", name="Lamp", source="api")
        finally:
            await core.bus.close()
            await core.store.close()

    asyncio.run(queue_a_delivery())
    assert checks(settings)["outbox"].message.startswith("1 pending")
    later = checks(settings, clock=lambda: time.time() + 7200)["outbox"]
    assert later.status == "WARN"
    assert "the oldest pending delivery is 2 hours old" in later.message


def test_deliveries_given_up_are_reported(tmp_path: Path, database: ScratchDatabase) -> None:
    """A webhook delivery that failed on every retry is named as given up, with where to look."""
    settings = settings_for(tmp_path, database.app_url)

    async def queue_a_delivery() -> None:
        core = build_core(settings, instance_secret=load_or_create_secret(tmp_path / "key"))
        await core.store.open()
        try:
            account = await make_account(core, "gaveup@example.com")
            principal = await core.auth.authenticate(account.key)
            await core.webhooks.create(
                principal,
                {"url": "https://hooks.example.com/x", "event_types": ["device.created"]},
            )
            await core.devices.create(principal, type="switch", name="Lamp", source="api")
        finally:
            await core.bus.close()
            await core.store.close()

    asyncio.run(queue_a_delivery())
    assert checks(settings)["outbox"].status == "OK"
    # What the dispatcher leaves after the last attempt: the row is dead, nothing is pending.
    superuser(database, "UPDATE outbox SET status = 'dead', last_error = 'answered 500'")
    outbox = checks(settings)["outbox"]
    assert outbox.status == "WARN"
    assert outbox.message == "0 pending, 1 given up: 1 deliveries failed on every retry"
    assert "deliveries" in (outbox.fix or "")
