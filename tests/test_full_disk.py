"""A full disk is a clear state, not a crash (issue 15).

The database sits on a real 4 MiB tmpfs (CI runs as root, so it can mount one), which a
filler file then fills to the last block. Writes must answer 507 ``storage_full`` in each
surface's format and keep nothing of themselves; ``/readyz`` and ``doctor`` say the disk is
low; ``/metrics`` shows the free bytes; removing the filler brings writes back without a
restart. PostgreSQL gets the same treatment: its tables are moved into a tablespace on such
a tmpfs, so the server itself runs out of room and answers SQLSTATE 53100.
"""

from __future__ import annotations

import dataclasses
import errno
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.cli import cli
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.integrations.alexa.views import SECRET_HEADER
from staterelay.settings import (
    DatabaseSettings,
    IftttSettings,
    Settings,
    WebhookSettings,
    load_settings,
)
from tests.alexa.conftest import assert_valid, directive
from tests.conftest import Account, link_oauth_client, make_account
from tests.ifttt.conftest import SERVICE_KEY, link
from tests.postgres_support import ADMIN_URL, fresh_database, migrated_database
from tests.skips import unavailable

pytestmark = pytest.mark.slow

DISK_SIZE = "4m"
MIN_FREE_MB = 1
Client = TestClient[web.Request, web.Application]


@contextmanager
def tiny_disk(where: Path, *, owner: str | None = None) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at ``where`` (owned by ``owner``), unmounted afterwards."""
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs for the full-disk tests: {mounted.stderr.strip()}")
    try:
        if owner is not None:
            subprocess.run(["chown", f"{owner}:{owner}", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Write a filler file until the file system refuses one more byte; return its path."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("ab", buffering=0) as handle:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    handle.write(chunk[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


async def flip_until_full(
    client: Client, device: str, headers: dict[str, str], limit: int = 5000
) -> tuple[dict[str, Any], int]:
    """Flip the device until a write is refused; (the refusal, the last acknowledged version)."""
    acknowledged = await version_of(client, device, headers)
    for attempt in range(limit):
        power = "ON" if attempt % 2 == 0 else "OFF"
        response = await client.put(
            f"/api/v1/devices/{device}/state", json={"power": power}, headers=headers
        )
        if response.status == 507:
            assert response.content_type == "application/problem+json"
            body: dict[str, Any] = await response.json(content_type=None)
            return body, acknowledged
        assert response.status == 200, await response.text()
        acknowledged = (await response.json())["version"]
    raise AssertionError(f"no write was refused in {limit} attempts")


def assert_storage_full(problem: dict[str, Any]) -> None:
    """The API's answer to a refused write."""
    assert problem["status"] == 507
    assert problem["code"] == "storage_full"
    assert problem["type"] == "https://staterelay.dev/problems/storage_full"
    assert "nothing of it was kept" in problem["detail"]


async def metric(client: Client, name: str) -> float | None:
    """One unlabelled sample of /metrics."""
    for line in (await (await client.get("/metrics")).text()).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def version_of(client: Client, device: str, headers: dict[str, str]) -> int:
    """The device's stored version."""
    response = await client.get(f"/api/v1/devices/{device}", headers=headers)
    assert response.status == 200
    version: int = (await response.json())["version"]
    return version


# --- SQLite ---------------------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """The tmpfs the SQLite database lives on."""
    with tiny_disk(tmp_path / "disk") as mounted:
        yield mounted


@pytest.fixture
def sqlite_settings(disk: Path) -> Settings:
    """The data directory on the tiny disk; a 1 MiB floor; IFTTT on."""
    base = load_settings(data_dir=disk / "data", environ={})
    return dataclasses.replace(
        base,
        database=DatabaseSettings(min_free_mb=MIN_FREE_MB),
        ifttt=IftttSettings(service_key=SERVICE_KEY),
        webhooks=WebhookSettings(allow_private_networks=True),
    )


def doctor(settings: Settings) -> tuple[int, str]:
    """``staterelay doctor`` on the instance; (exit code, the disk line)."""
    result = CliRunner().invoke(
        cli,
        ["doctor", "--data-dir", str(settings.data_dir)],
        env={"STATERELAY_DATABASE_MIN_FREE_MB": str(MIN_FREE_MB)},
    )
    lines = [line for line in result.stdout.splitlines() if line[6:].startswith("disk")]
    assert len(lines) == 1, result.stdout
    return result.exit_code, lines[0] + "\n" + result.stdout


async def test_sqlite_full_disk_is_507_everywhere_and_heals_without_a_restart(
    sqlite_settings: Settings, disk: Path
) -> None:
    app = create_app(sqlite_settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        core = app[CORE_KEY]
        linked = await link(core, "full@example.com")
        headers = {"Authorization": f"Bearer {linked.api_key}"}
        created = await client.post(
            "/api/v1/devices", json={"type": "switch", "name": "Lamp"}, headers=headers
        )
        device = (await created.json())["id"]
        person = Account(
            linked.principal.user_id, linked.principal.tenant_id, linked.api_key, "full@example.com"
        )
        _, alexa_token = await link_oauth_client(core, person, client_id="alexa-full-disk")
        assert (await client.get("/readyz")).status == 200
        assert await metric(client, "database_free_bytes") > MIN_FREE_MB * 1024 * 1024
        assert doctor(sqlite_settings)[0] == 0, doctor(sqlite_settings)[1]

        filler = fill(disk)
        problem, acknowledged = await flip_until_full(client, device, headers)
        assert_storage_full(problem)
        # Nothing of the refused write was kept: the stored version is the last acknowledged.
        assert await version_of(client, device, headers) == acknowledged

        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "below database.min_free_mb (1 MiB)" in (await ready.json())["reason"]
        assert await metric(client, "staterelay_ready") == 0
        assert await metric(client, "database_free_bytes") < MIN_FREE_MB * 1024 * 1024
        assert await metric(client, "database_storage_full_errors_total") >= 1
        code, line = doctor(sqlite_settings)
        assert code == 1
        assert line.startswith("FAIL  disk")
        assert "below database.min_free_mb (1 MiB)" in line

        # Alexa: an ErrorResponse (INTERNAL_ERROR) that says why.
        answer = await client.post(
            "/alexa/smart_home",
            json=directive("Alexa.PowerController", "TurnOn", alexa_token, device),
            headers={
                SECRET_HEADER: relay_secret(load_or_create_secret(sqlite_settings.secret_key_path))
            },
        )
        assert answer.status == 200
        body = await answer.json()
        assert_valid(body)
        assert body["event"]["header"]["name"] == "ErrorResponse"
        assert body["event"]["payload"]["type"] == "INTERNAL_ERROR"
        assert "no room" in body["event"]["payload"]["message"]
        # IFTTT: 500 with an errors list (its way to say "our fault, try later").
        action = await client.post(
            "/ifttt/v1/actions/set_power",
            json={"actionFields": {"device": device, "power": "on"}},
            headers={"Authorization": f"Bearer {linked.token}", "X-Request-ID": "full-1"},
        )
        assert action.status == 500
        assert "no room" in (await action.json())["errors"][0]["message"]
        assert await version_of(client, device, headers) == acknowledged

        filler.unlink()
        assert (await client.get("/readyz")).status == 200
        again = await client.put(
            f"/api/v1/devices/{device}/state", json={"power": "ON"}, headers=headers
        )
        assert again.status == 200, await again.text()
        assert (await again.json())["version"] == acknowledged + 1
        assert doctor(sqlite_settings)[0] == 0, doctor(sqlite_settings)[1]
    database = sqlite_settings.data_dir / "staterelay.db"
    conn = sqlite3.connect(database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


# --- PostgreSQL -----------------------------------------------------------------------------


@asynccontextmanager
async def tablespace_on(disk: Path) -> AsyncIterator[str]:
    """A tablespace in ``disk`` (owned by postgres); dropped when the block ends."""
    name = f"staterelay_full_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
        yield name
    finally:
        await admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
        await admin.close()


async def test_postgres_full_disk_is_507_and_heals_without_a_restart(tmp_path: Path) -> None:
    async with fresh_database():
        pass  # skips (fails on CI) here when no PostgreSQL answers
    # The server runs as postgres, which cannot enter pytest's private temp directory.
    mount_point = Path(tempfile.gettempdir()) / f"staterelay-pgfull-{uuid.uuid4().hex[:12]}"
    with tiny_disk(mount_point, owner="postgres") as disk:
        async with tablespace_on(disk) as space, migrated_database() as database:
            admin = await asyncpg.connect(database.admin_url)
            try:
                # Every table and index of the app moves onto the tiny disk; the WAL stays
                # on the server's own disk, so the server itself keeps running.
                await admin.execute(
                    f"ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE {space}"
                )
                await admin.execute(
                    f"ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE {space}"
                )
            finally:
                await admin.close()
            settings = dataclasses.replace(
                load_settings(data_dir=tmp_path / "data", environ={}),
                database=DatabaseSettings(url=database.app_url),
            )
            app = create_app(settings)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                account = await make_account(app[CORE_KEY], "full@example.com")
                created = await client.post(
                    "/api/v1/devices",
                    json={"type": "switch", "name": "Lamp"},
                    headers=account.headers,
                )
                device = (await created.json())["id"]
                filler = fill(disk)
                problem, acknowledged = await flip_until_full(client, device, account.headers)
                assert_storage_full(problem)
                assert await version_of(client, device, account.headers) == acknowledged
                assert await metric(client, "database_storage_full_errors_total") >= 1
                # The server's free space is not visible from here: no gauge, still ready.
                assert await metric(client, "database_free_bytes") is None
                assert (await client.get("/readyz")).status == 200

                filler.unlink()
                again = await client.put(
                    f"/api/v1/devices/{device}/state",
                    json={"power": "ON"},
                    headers=account.headers,
                )
                assert again.status == 200, await again.text()
                assert (await again.json())["version"] == acknowledged + 1
