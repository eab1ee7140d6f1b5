"""``staterelay backup`` and ``restore``: consistent under writes, whole, and careful.

The end-to-end test backs up a live server while a client keeps changing a device, then
restores into a new data directory and checks that devices, API keys, OAuth grants and
webhook secrets all work there unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from standardwebhooks import Webhook as WebhookVerifier

from staterelay.cli import cli
from staterelay.core.crypto import load_or_create_secret
from staterelay.ops import backup as backups
from staterelay.ops.lock import InstanceLock, running_pid
from tests.instances import populate, scribble_over_table
from tests.processes import ServerProcess, run_cli

LOOPBACK_HOOKS = {"STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true"}
QUIET = {"STATERELAY_LOG_LEVEL": "warning"}
# The busy-server test writes as fast as it can with one key from one address, well past
# the default limits.
UNLIMITED = {"STATERELAY_LIMITS_API_KEY_PER_MINUTE": "0", "STATERELAY_LIMITS_IP_PER_MINUTE": "0"}


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own STATERELAY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("STATERELAY_"):
            monkeypatch.delenv(name)


def names_in(folder: Path) -> list[str]:
    """The sorted names in a folder."""
    return sorted(path.name for path in folder.iterdir())


def invoke(*args: str) -> Result:
    """The command line in-process, stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args))


def fails_with(result: Result, text: str) -> None:
    """The command failed with exit code 1 and one line containing ``text``."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("staterelay: ")
    assert text in lines[0], lines[0]


# --- archive ----------------------------------------------------------------------------


async def test_backup_archive_holds_manifest_database_and_key(tmp_path: Path) -> None:
    """One private file: a manifest, a checked database snapshot and the secret key."""
    data = tmp_path / "data"
    await populate(data)
    archive = tmp_path / "backup.tar.gz"
    result = invoke("backup", str(archive), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert "2 devices, 1 users" in result.stderr
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "secret.key", "staterelay.db"]
        assert all(member.mode == 0o600 for member in tar.getmembers())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        key = tar.extractfile("secret.key").read()  # type: ignore[union-attr]
    assert manifest["format"] == "staterelay-backup"
    assert manifest["version"] == 1
    assert manifest["secret_key"] is True
    assert key == (data / "secret.key").read_bytes()
    assert names_in(tmp_path) == ["backup.tar.gz", "data"]  # no staging leftovers


async def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    """An existing file is kept unless --force; with it the new archive replaces it whole."""
    data = tmp_path / "data"
    await populate(data)
    archive = tmp_path / "backup.tar.gz"
    archive.write_text("precious")
    fails_with(invoke("backup", str(archive), "--data-dir", str(data)), "--force")
    assert archive.read_text() == "precious"
    assert invoke("backup", str(archive), "--data-dir", str(data), "--force").exit_code == 0
    assert tarfile.is_tarfile(archive)


def test_backup_refuses_what_it_cannot_copy(tmp_path: Path) -> None:
    """No database yet, a non-SQLite file, and PostgreSQL: each one clear line."""
    data = tmp_path / "data"
    archive = str(tmp_path / "b.tar.gz")
    fails_with(invoke("backup", archive, "--data-dir", str(data)), "nothing to back up")
    data.mkdir()
    (data / "staterelay.db").write_text("this is not a database")
    fails_with(invoke("backup", archive, "--data-dir", str(data)), "is not an SQLite database")
    config = tmp_path / "pg.yaml"
    config.write_text("database:\n  url: postgresql://localhost/staterelay\n")
    result = invoke("backup", archive, "--data-dir", str(data), "--config", str(config))
    fails_with(result, "pg_dump")
    assert not Path(archive).exists()


async def test_backup_without_a_key_file_warns_but_keeps_the_database(tmp_path: Path) -> None:
    """A lost key must not cost the database its backup."""
    data = tmp_path / "data"
    await populate(data)
    (data / "secret.key").unlink()
    archive = tmp_path / "b.tar.gz"
    result = invoke("backup", str(archive), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr
    assert "secret.key is missing" in result.stderr
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "staterelay.db"]


def test_snapshot_is_consistent_while_another_connection_writes(tmp_path: Path) -> None:
    """Page by page with pauses, under constant commits, the copy is one moment's database."""
    source = tmp_path / "live.db"
    writer = sqlite3.connect(source, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA synchronous = OFF")  # quick commits: many land during the copy
    writer.execute("CREATE TABLE pairs (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, pad BLOB)")
    writer.execute("BEGIN")
    writer.executemany(
        "INSERT INTO pairs (a, b, pad) VALUES (?, ?, randomblob(100))",
        [(i, -i) for i in range(20000)],
    )
    writer.execute("COMMIT")
    stop = threading.Event()
    commits = 0

    def write() -> None:
        nonlocal commits
        # Each commit keeps the invariant a + b = 0 in every row, and adds a row.
        while not stop.is_set():
            writer.execute("BEGIN IMMEDIATE")
            writer.execute(
                "UPDATE pairs SET a = a + 1, b = b - 1 WHERE id % 97 = ?", (commits % 97,)
            )
            writer.execute("INSERT INTO pairs (a, b) VALUES (1, -1)")
            writer.execute("COMMIT")
            commits += 1

    thread = threading.Thread(target=write)
    thread.start()
    steps: list[tuple[int, int]] = []
    try:
        backups.snapshot(
            source,
            tmp_path / "copy.db",
            pages_per_step=8,
            pause=0.001,
            progress=lambda done, total: steps.append((done, total)),
        )
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert commits > 10, "the writer did not run alongside the backup"
    assert len(steps) > 10
    # Progress only ever moves forward: the copy never started over.
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert copy.execute("SELECT count(*) FROM pairs WHERE a + b != 0").fetchone() == (0,)
    rows = copy.execute("SELECT count(*) FROM pairs").fetchone()[0]
    assert 20000 <= rows <= 20000 + commits
    copy.close()


# --- restore ----------------------------------------------------------------------------


async def test_restore_refuses_an_existing_database_without_force(tmp_path: Path) -> None:
    """--force replaces it; the old database and key are kept beside it, intact."""
    first, second = tmp_path / "first", tmp_path / "second"
    await populate(first)
    await populate(second)
    old_key = (second / "secret.key").read_bytes()
    archive = tmp_path / "first.tar.gz"
    assert invoke("backup", str(archive), "--data-dir", str(first)).exit_code == 0
    fails_with(invoke("restore", str(archive), "--data-dir", str(second)), "--force")

    result = invoke("restore", str(archive), "--data-dir", str(second), "--force")
    assert result.exit_code == 0, result.output
    assert "with its secret key" in result.stdout
    assert (second / "secret.key").read_bytes() == (first / "secret.key").read_bytes()
    kept_db = [p for p in second.iterdir() if p.name.startswith("staterelay.db.before-restore-")]
    kept_key = [p for p in second.iterdir() if p.name.startswith("secret.key.before-restore-")]
    assert len(kept_db) == 1
    assert len(kept_key) == 1
    assert kept_key[0].read_bytes() == old_key
    old = sqlite3.connect(kept_db[0])
    assert old.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert old.execute("SELECT count(*) FROM devices").fetchone() == (2,)
    old.close()
    assert not (second / "staterelay.db-wal").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some text", "neither a StateRelay backup nor an SQLite database"),
        (b"", "neither a StateRelay backup nor an SQLite database"),
    ],
)
def test_restore_refuses_files_that_are_not_backups(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """Random files are refused before anything is touched."""
    source = tmp_path / "file"
    source.write_bytes(content)
    fails_with(invoke("restore", str(source), "--data-dir", str(tmp_path / "data")), message)
    assert not (tmp_path / "data" / "staterelay.db").exists()


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
    return path


async def test_restore_checks_the_archive_and_the_database_in_it(tmp_path: Path) -> None:
    """Wrong format, missing members, a changed database, a foreign or newer schema: refused."""
    data = tmp_path / "data"
    await populate(data)
    good = tmp_path / "good.tar.gz"
    assert invoke("backup", str(good), "--data-dir", str(data)).exit_code == 0
    with tarfile.open(good) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"])
    target = str(tmp_path / "target")

    def attempt(name: str, changed: dict[str, bytes], message: str) -> None:
        source = _archive(tmp_path / name, changed)
        fails_with(invoke("restore", str(source), "--data-dir", target), message)
        assert not (tmp_path / "target" / "staterelay.db").exists()

    attempt("tar.tgz", {"notes.txt": b"hello"}, "incomplete: it has no manifest.json")
    other = {**manifest, "format": "something-else"}
    attempt("fmt.tgz", {**members, "manifest.json": json.dumps(other).encode()}, "not a StateRelay")
    future = {**manifest, "version": 99}
    attempt("v99.tgz", {**members, "manifest.json": json.dumps(future).encode()}, "version 99")
    no_db = {k: v for k, v in members.items() if k != "staterelay.db"}
    attempt("nodb.tgz", no_db, "no staterelay.db")
    tampered = bytearray(members["staterelay.db"])
    tampered[-100] ^= 0xFF
    attempt("bits.tgz", {**members, "staterelay.db": bytes(tampered)}, "checksum")

    # A database with a schema version this StateRelay does not know.
    newer = tmp_path / "newer.db"
    newer.write_bytes(members["staterelay.db"])
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)")
    conn.commit()
    conn.close()
    fails_with(invoke("restore", str(newer), "--data-dir", target), "upgrade StateRelay first")
    # Some other program's SQLite database.
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    fails_with(invoke("restore", str(foreign), "--data-dir", target), "not a StateRelay database")


async def test_restore_of_a_damaged_database_is_refused(tmp_path: Path) -> None:
    """integrity_check must pass before a database replaces anything."""
    data = tmp_path / "data"
    await populate(data)
    damaged = tmp_path / "damaged.db"
    snapshot = tmp_path / "snap.db"
    backups.snapshot(data / "staterelay.db", snapshot)
    scribble_over_table(snapshot, "devices")
    damaged.write_bytes(snapshot.read_bytes())
    result = invoke("restore", str(damaged), "--data-dir", str(tmp_path / "target"))
    assert result.exit_code == 1
    assert "damaged" in result.stderr or "cannot be read" in result.stderr


async def test_bare_database_restore_keeps_the_local_key_only_if_it_fits(tmp_path: Path) -> None:
    """A bare SQLite file needs the key it was made with already in the data directory."""
    data = tmp_path / "data"
    await populate(data)
    bare = tmp_path / "copy.db"
    backups.snapshot(data / "staterelay.db", bare)

    # Into a directory holding another key: refused, the webhook secret would not decrypt.
    other = tmp_path / "other"
    other.mkdir()
    load_or_create_secret(other / "secret.key")
    fails_with(invoke("restore", str(bare), "--data-dir", str(other)), "does not decrypt")
    # Into a directory with no key at all: refused too.
    fails_with(invoke("restore", str(bare), "--data-dir", str(tmp_path / "empty")), "no secret key")
    # Into a directory holding the right key: fine.
    same = tmp_path / "same"
    same.mkdir()
    (same / "secret.key").write_bytes((data / "secret.key").read_bytes())
    result = invoke("restore", str(bare), "--data-dir", str(same))
    assert result.exit_code == 0, result.output
    assert "with its secret key" not in result.stdout


async def test_restore_refuses_while_the_data_directory_is_locked(tmp_path: Path) -> None:
    """A running server holds the lock; restore says so and changes nothing."""
    data = tmp_path / "data"
    await populate(data)
    archive = tmp_path / "b.tar.gz"
    assert invoke("backup", str(archive), "--data-dir", str(data)).exit_code == 0
    before = (data / "staterelay.db").read_bytes()
    with InstanceLock(data):
        assert running_pid(data) == os.getpid()
        result = invoke("restore", str(archive), "--data-dir", str(data), "--force")
    fails_with(result, f"a StateRelay server (pid {os.getpid()}) is using {data}; stop it first")
    assert (data / "staterelay.db").read_bytes() == before
    assert running_pid(data) is None


# --- end to end: a live server under writes ------------------------------------------------


class Receiver:
    """A webhook receiver on loopback."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        """Record one delivery."""
        self.deliveries.append((await request.read(), dict(request.headers)))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> tuple[Receiver, str]:
    """A receiver and its URL."""
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    server = await aiohttp_server(app)
    return target, str(server.make_url("/hook"))


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    """Servers a test starts, stopped whatever happens."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.ensure_stopped()


@pytest.mark.slow
async def test_backup_of_a_busy_server_restores_into_a_working_instance(
    tmp_path: Path, receiver: tuple[Receiver, str], processes: list[ServerProcess]
) -> None:
    """Backup while a client writes; restore elsewhere; ids, state, keys and grants work."""
    hooks, hook_url = receiver
    source_dir, target_dir = tmp_path / "source", tmp_path / "target"
    made = await populate(source_dir)
    auth = {"Authorization": f"Bearer {made['key']}"}
    source = ServerProcess(source_dir, {**LOOPBACK_HOOKS, **QUIET, **UNLIMITED})
    processes.append(source)
    await source.start()

    acks: list[tuple[float, float, int, str]] = []  # (sent, answered, version, power)
    async with aiohttp.ClientSession(base_url=source.url, headers=auth) as http:
        async with http.patch(
            f"/api/v1/webhooks/{made['webhook']}", json={"url": hook_url}
        ) as response:
            assert response.status == 200, await response.text()
        async with http.post("/api/v1/devices", json={"type": "switch", "name": "Busy"}) as r:
            busy = (await r.json())["id"]

        stop = asyncio.Event()

        async def keep_writing() -> None:
            # Version v has power ON when v is even: the first change (version 2) turns it on.
            deadline = time.monotonic() + 60
            power = "ON"
            while not stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                async with http.put(f"/api/v1/devices/{busy}/state", json={"power": power}) as r:
                    assert r.status == 200, await r.text()
                    body = await r.json()
                acks.append((sent, time.monotonic(), body["version"], body["state"]["power"]))
                power = "OFF" if power == "ON" else "ON"

        writer = asyncio.create_task(keep_writing())
        while len(acks) < 300:  # some history first, so the database has pages to copy
            await asyncio.sleep(0.01)
        archive = tmp_path / "busy.tar.gz"
        started = time.monotonic()
        backup = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "staterelay",
            "backup",
            str(archive),
            "--data-dir",
            str(source_dir),
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await backup.communicate()
        finished = time.monotonic()
        await asyncio.sleep(0.2)
        stop.set()
        await writer
        async with http.get("/api/v1/devices") as response:
            originals = {d["id"]: d for d in (await response.json())["items"]}
    assert backup.returncode == 0, stderr.decode()

    during = [ack for ack in acks if started <= ack[0] and ack[1] <= finished]
    around = [ack for ack in acks if ack[1] >= started and ack[0] <= finished]
    assert during or len(around) >= 2, "the server did not keep answering during the backup"
    # The server was never held up for long by the backup.
    assert max(answered - sent for sent, answered, _, _ in around) < 2.0
    before = max(version for _, answered, version, _ in acks if answered < started)
    after = min(version for sent, _, version, _ in acks if sent > finished)

    # A restore into the running source is refused; into a new directory it works.
    refused = await asyncio.to_thread(
        CliRunner().invoke, cli, ["restore", str(archive), "--data-dir", str(source_dir), "--force"]
    )
    assert refused.exit_code == 1
    assert "is using" in refused.stderr
    run_cli(target_dir, "restore", str(archive))
    source.terminate()

    target = ServerProcess(target_dir, {**LOOPBACK_HOOKS, **QUIET})
    processes.append(target)
    await target.start()
    async with aiohttp.ClientSession(base_url=target.url) as http:
        async with http.get("/api/v1/devices", headers=auth) as response:
            assert response.status == 200, "the API key works after the restore"
            devices = {d["id"]: d for d in (await response.json())["items"]}
        assert set(devices) == set(originals)
        assert len(devices) == 3
        for device_id, device in devices.items():
            if device_id != busy:
                assert device == originals[device_id]
        assert devices[made["lamp"]]["state"] == {"power": "OFF", "brightness": 30}
        version = devices[busy]["version"]
        assert before <= version <= after
        assert devices[busy]["state"]["power"] == ("ON" if version % 2 == 0 else "OFF")

        oauth = {"Authorization": f"Bearer {made['oauth_token']}"}
        async with http.get("/api/v1/me", headers=oauth) as response:
            assert response.status == 200, "the OAuth grant survives the restore"

        # The webhook's signing secret still decrypts: the next event is signed with it.
        fan = next(i for i, d in devices.items() if d["name"] == "Fan")
        async with http.delete(f"/api/v1/devices/{fan}", headers=auth) as response:
            assert response.status == 204, await response.text()
        await asyncio.wait_for(hooks.arrived.wait(), timeout=15)
        body, headers = hooks.deliveries[-1]
        verified = WebhookVerifier(made["secret"]).verify(body, headers)
        assert verified["type"] == "device.deleted"
        assert verified["device"]["id"] == fan


@pytest.mark.slow
async def test_a_second_server_on_the_same_data_directory_is_refused(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    """serve holds the data directory's lock; a second serve says who has it and exits 1."""
    data = tmp_path / "data"
    first = ServerProcess(data, QUIET)
    processes.append(first)
    await first.start()
    assert first.proc is not None
    assert running_pid(data) == first.proc.pid
    second = ServerProcess(data, QUIET)
    processes.append(second)
    with pytest.raises(AssertionError) as refused:
        await second.start(timeout=10)
    assert f"a StateRelay server (pid {first.proc.pid}) is using {data}" in str(refused.value)
    assert first.terminate() == 0
    # The lock goes with the process; the file stays and blocks nothing.
    assert running_pid(data) is None
    assert (data / "staterelay.lock").exists()
