"""``staterelay doctor``: every check's OK path and what it says when something is wrong."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from staterelay.cli import cli
from staterelay.core import Core
from staterelay.ops import backup as backups
from staterelay.ops.doctor import Check, run_checks
from staterelay.ops.lock import InstanceLock
from staterelay.settings import AlexaSettings, IftttSettings, Settings, load_settings
from tests.instances import populate, scribble_over_table, with_core


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own STATERELAY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("STATERELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An instance that has run once: a user, a key, devices and a webhook; WAL mode."""
    data = tmp_path / "data"
    asyncio.run(populate(data))
    return data


def settings_for(data_dir: Path, **sections: Any) -> Settings:
    """Default settings on ``data_dir`` with some sections replaced."""
    return dataclasses.replace(load_settings(data_dir=data_dir, environ={}), **sections)


def check(settings: Settings, name: str, **kwargs: Any) -> Check:
    """The one check called ``name``."""
    found = [c for c in run_checks(settings, None, **kwargs) if c.name == name]
    assert len(found) == 1, [c.name for c in run_checks(settings, None, **kwargs)]
    return found[0]


def doctor(*args: str) -> Result:
    """``staterelay doctor`` in-process."""
    return CliRunner().invoke(cli, ["doctor", *args])


def sql(data_dir: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Change the database behind StateRelay's back, as damage or time would."""
    conn = sqlite3.connect(data_dir / "staterelay.db", isolation_level=None)
    try:
        conn.execute(statement, params)
    finally:
        conn.close()


# --- the command ------------------------------------------------------------------------


def test_a_healthy_instance_is_all_ok_and_exits_0(data_dir: Path) -> None:
    """Every line OK; each names its check."""
    result = doctor("--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    names = [line.split()[1] for line in lines]
    assert names == [
        "config",
        "data",
        "database",
        "journal",
        "disk",
        "secret",
        "durability",
        "public",
        "alexa",
        "ifttt",
        "billing",
        "google",
        "mqtt",
        "clock",
        "outbox",
        "server",
    ]
    assert all(line.startswith("OK ") for line in lines), result.stdout


def test_warnings_alone_exit_0_and_carry_a_fix(tmp_path: Path) -> None:
    """A fresh machine: nothing exists yet, which is worth saying but is not broken."""
    result = doctor("--data-dir", str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert "WARN  data dir" in result.stdout
    assert "WARN  database    no database at" in result.stdout
    assert "fix: `staterelay serve` creates it on first start" in result.stdout
    assert not (tmp_path / "new").exists(), "doctor must not create anything"


def test_a_failure_exits_1(data_dir: Path) -> None:
    """One FAIL is enough."""
    (data_dir / "secret.key").chmod(0o644)
    result = doctor("--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "FAIL  secret key" in result.stdout
    assert f"fix: chmod 600 {data_dir / 'secret.key'}" in result.stdout


def test_a_config_that_does_not_load_is_the_one_failure(tmp_path: Path) -> None:
    """The config error names the key; nothing else can be checked without settings."""
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: lots\n")
    result = doctor("--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL  config      config error: server.port: must be")


def test_the_config_file_in_use_is_named(data_dir: Path) -> None:
    """OK config names the file it loaded."""
    (data_dir / "config.yaml").write_text("log:\n  level: warning\n")
    result = doctor("--data-dir", str(data_dir))
    assert f"OK    config      loaded {data_dir / 'config.yaml'}" in result.stdout


# --- each check -------------------------------------------------------------------------


def test_data_dir_open_to_others_fails(data_dir: Path) -> None:
    """Group- or world-writable data directories let others swap the database."""
    data_dir.chmod(0o777)
    found = check(settings_for(data_dir), "data dir")
    assert found.status == "FAIL"
    assert found.fix == f"chmod 700 {data_dir}"


def test_database_that_is_not_sqlite_fails(tmp_path: Path) -> None:
    """Some other file where the database should be."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "staterelay.db").write_text("hello")
    found = check(settings_for(data), "database")
    assert found.status == "FAIL"
    assert "is not an SQLite database" in found.message
    assert "staterelay restore" in (found.fix or "")


def test_damaged_database_fails(data_dir: Path) -> None:
    """quick_check finds scribbled pages."""
    sql(data_dir, "PRAGMA wal_checkpoint(TRUNCATE)")
    scribble_over_table(data_dir / "staterelay.db", "devices")
    found = check(settings_for(data_dir), "database")
    assert found.status == "FAIL"
    assert "damaged" in found.message or "cannot be read" in found.message


def test_database_from_a_newer_release_fails_and_pending_migrations_warn(data_dir: Path) -> None:
    """Unknown versions mean upgrade; missing ones mean the server has not restarted yet."""
    sql(data_dir, "INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)")
    found = check(settings_for(data_dir), "database")
    assert found.status == "FAIL"
    assert found.fix == "upgrade StateRelay to the version that wrote this database"
    sql(data_dir, "DELETE FROM schema_migrations WHERE version IN (9999, 3)")
    found = check(settings_for(data_dir), "database")
    assert found.status == "WARN"
    assert "migrations 3 not applied yet" in found.message


def test_journal_mode_other_than_wal_warns(data_dir: Path, tmp_path: Path) -> None:
    """A freshly restored database is in rollback mode until the server starts."""
    assert check(settings_for(data_dir), "journal").status == "OK"
    sql(data_dir, "PRAGMA journal_mode = DELETE")
    found = check(settings_for(data_dir), "journal")
    assert found.status == "WARN"
    assert found.fix == "start the server once: it switches the database to WAL"


def test_doctor_leaves_no_files_behind(data_dir: Path) -> None:
    """Read-only: no -wal/-shm files appear (they would belong to whoever ran doctor)."""
    sql(data_dir, "PRAGMA wal_checkpoint(TRUNCATE)")
    before = sorted(p.name for p in data_dir.iterdir())
    run_checks(settings_for(data_dir), None)
    assert sorted(p.name for p in data_dir.iterdir()) == before


def test_secret_key_problems(data_dir: Path, tmp_path: Path) -> None:
    """Missing, garbage, or another instance's key all fail: the webhook secrets need it."""
    key = data_dir / "secret.key"
    good = key.read_bytes()
    assert check(settings_for(data_dir), "secret key").status == "OK"
    key.write_bytes(b"not base64 at all\n")
    assert "does not hold a valid" in check(settings_for(data_dir), "secret key").message
    other = tmp_path / "other.key"
    from staterelay.core.crypto import load_or_create_secret

    load_or_create_secret(other)
    key.write_bytes(other.read_bytes())
    found = check(settings_for(data_dir), "secret key")
    assert found.status == "FAIL"
    assert "it is another key" in found.message
    key.unlink()
    found = check(settings_for(data_dir), "secret key")
    assert found.status == "FAIL"
    assert "webhook secrets need it" in found.message
    key.write_bytes(good)
    key.chmod(0o600)
    assert check(settings_for(data_dir), "secret key").status == "OK"


def test_missing_key_without_secrets_only_warns(tmp_path: Path) -> None:
    """Before the first start there is no key yet, and nothing needs one."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    found = check(settings_for(data), "secret key")
    assert found.status == "WARN"


def test_durability(data_dir: Path) -> None:
    """full is OK; normal is allowed but says what it risks."""
    full = check(settings_for(data_dir), "durability")
    assert full.status == "OK"
    assert "synchronous=FULL" in full.message
    base = settings_for(data_dir)
    normal = dataclasses.replace(base.database, durability="normal")
    found = check(settings_for(data_dir, database=normal), "durability")
    assert found.status == "WARN"
    assert "synchronous=NORMAL" in found.message


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("https://home.example.com", "OK"),
        ("http://localhost:8080", "OK"),
        ("http://127.0.0.1:8080", "OK"),
        ("http://[::1]:8080", "OK"),
        ("http://192.168.1.20:8080", "WARN"),
        ("http://home.example.com", "WARN"),
    ],
)
def test_public_url_scheme(data_dir: Path, url: str, status: str) -> None:
    """Plain http is fine on this machine only."""
    base = settings_for(data_dir)
    server = dataclasses.replace(base.server, public_url=url)
    assert check(settings_for(data_dir, server=server), "public url").status == status


def test_alexa_and_ifttt_completeness(data_dir: Path) -> None:
    """Not configured is fine; half-configured fails naming the keys; http fails."""
    assert check(settings_for(data_dir), "alexa").message == "not configured (optional)"
    half = AlexaSettings(messaging_client_id="amzn1.application-oa2-client.x")
    found = check(settings_for(data_dir, alexa=half), "alexa")
    assert found.status == "FAIL"
    assert "but alexa.messaging_client_secret missing" in found.message
    assert "alexa.messaging_client_id set" in found.message
    whole = AlexaSettings(
        relay_secret="r", messaging_client_id="id", messaging_client_secret="s", region="EU"
    )
    found = check(settings_for(data_dir, alexa=whole), "alexa")
    assert found.status == "FAIL"
    assert "not https" in found.message
    base = settings_for(data_dir)
    https = dataclasses.replace(base.server, public_url="https://home.example.com")
    assert check(settings_for(data_dir, alexa=whole, server=https), "alexa").status == "OK"

    custom = IftttSettings(realtime_url="https://realtime.example.com/v1/notifications")
    found = check(settings_for(data_dir, ifttt=custom, server=https), "ifttt")
    assert found.status == "FAIL"
    assert "ifttt.service_key missing" in found.message
    keyed = IftttSettings(service_key="k")
    assert check(settings_for(data_dir, ifttt=keyed, server=https), "ifttt").status == "OK"


def test_clock_against_the_newest_activity(data_dir: Path) -> None:
    """Activity from the future means the clock went back; a long silence is worth a look."""
    now = time.time()
    assert check(settings_for(data_dir), "clock").status == "OK"
    found = check(settings_for(data_dir), "clock", clock=lambda: now - 3 * 86400)
    assert found.status == "WARN"
    assert "the clock has gone back" in found.message
    found = check(settings_for(data_dir), "clock", clock=lambda: now + 400 * 86400)
    assert found.status == "WARN"
    assert "400 days ago" in found.message
    found = check(settings_for(data_dir), "clock", clock=lambda: 86400.0)
    assert found.status == "FAIL"
    assert "1970-01-02" in found.message


def _outbox_row(data_dir: Path, status: str, age: float) -> None:
    conn = sqlite3.connect(data_dir / "staterelay.db", isolation_level=None)
    try:
        tenant = conn.execute("SELECT id FROM tenants").fetchone()[0]
        created = time.time() - age
        conn.execute(
            "INSERT INTO outbox (tenant_id, sink, destination, ordering_key, event_id, event_type,"
            " payload, status, next_attempt_at, created_at) VALUES (?, 'webhook', 'whk_x',"
            " 'webhook:whk_x:', ?, 'x', '{}', ?, ?, ?)",
            (tenant, f"evt-{status}-{age}", status, created, created),
        )
    finally:
        conn.close()


def test_outbox_health(data_dir: Path) -> None:
    """Fresh pending rows are normal; old ones and given-up ones are not."""
    assert check(settings_for(data_dir), "outbox").status == "OK"
    _outbox_row(data_dir, "pending", 5)
    found = check(settings_for(data_dir), "outbox")
    assert found.status == "OK"
    assert found.message.startswith("1 pending, 0 given up")
    _outbox_row(data_dir, "dead", 86400)
    found = check(settings_for(data_dir), "outbox")
    assert found.status == "WARN"
    assert "1 deliveries failed on every retry" in found.message
    _outbox_row(data_dir, "pending", 7200)
    found = check(settings_for(data_dir), "outbox")
    assert found.status == "WARN"
    assert "the oldest pending delivery is 2 hours old" in found.message


def test_server_running_is_reported(data_dir: Path) -> None:
    """The lock tells whether a server has this data directory, and its pid."""
    assert check(settings_for(data_dir), "server").message == "not running on this data directory"
    with InstanceLock(data_dir):
        assert check(settings_for(data_dir), "server").message == f"running (pid {os.getpid()})"


def test_checks_a_restored_backup(data_dir: Path, tmp_path: Path) -> None:
    """After restore the instance checks out (journal mode waits for the first start)."""
    archive = tmp_path / "b.tar.gz"
    backups.create_backup(settings_for(data_dir), archive)
    target = tmp_path / "restored"
    backups.restore_backup(settings_for(target), archive)
    statuses = {c.name: c.status for c in run_checks(settings_for(target), None)}
    assert statuses.pop("journal") == "WARN"
    assert set(statuses.values()) == {"OK"}

    async def nothing(core: Core) -> None:
        return None

    asyncio.run(with_core(target, nothing))
    assert check(settings_for(target), "journal").status == "OK"
