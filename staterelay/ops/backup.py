"""Backup and restore of a SQLite instance: one archive holding a database snapshot and the key.

An archive (``tar``, gzip-compressed, mode 0600) holds three members:

- ``manifest.json``: format name and version, when and by which StateRelay it was made, the
  schema version and the SHA-256 of the database member;
- ``staterelay.db``: a consistent snapshot made with SQLite's online backup API;
- ``secret.key``: the instance secret. Webhook signing secrets and linked-service tokens are
  encrypted with it, so a database without its key is only half a backup.

The snapshot reads the live database inside one read transaction, a few hundred pages per
step with a pause between steps. In WAL mode a reader never blocks the server's writer, and
pinning one snapshot keeps the copy from restarting every time the server commits, so a
backup under constant writes finishes and is exactly the database as of its first step.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from staterelay import __version__
from staterelay.app.registry import migration_folders
from staterelay.core.crypto import SECRET_BYTES, SecretBox
from staterelay.ops.lock import InstanceLock, InstanceRunning
from staterelay.settings import Settings
from staterelay.store.sqlite.engine import BUSY_TIMEOUT_MS, all_migrations

ARCHIVE_FORMAT = "staterelay-backup"
ARCHIVE_VERSION = 1
MANIFEST_MEMBER = "manifest.json"
DB_MEMBER = "staterelay.db"
KEY_MEMBER = "secret.key"
SQLITE_HEADER = b"SQLite format 3\x00"
PAGES_PER_STEP = 256  # 1 MiB with 4 KiB pages
STEP_PAUSE = 0.002
# The tables a StateRelay database has had since its first schema version.
CORE_TABLES = ("schema_migrations", "tenants", "users", "devices", "device_properties")

Progress = Callable[[int, int], None]


class BackupError(Exception):
    """Backup or restore cannot go on; the message says why and what to do, on one line."""


@dataclass(frozen=True)
class DatabaseFacts:
    """What a validated StateRelay database holds."""

    schema_version: int
    migrations: tuple[int, ...]
    tenants: int
    users: int
    devices: int
    encrypted_sample: str | None


@dataclass(frozen=True)
class BackupResult:
    """What ``create_backup`` wrote."""

    path: Path
    facts: DatabaseFacts
    bytes: int
    seconds: float
    with_key: bool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore_backup`` put in place, and where the replaced files went."""

    database: Path
    facts: DatabaseFacts
    created_at: str | None
    key_restored: bool
    set_aside: tuple[Path, ...]


def sqlite_path(settings: Settings) -> Path:
    """The SQLite file of an instance; ``BackupError`` for any other database."""
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        raise BackupError(
            "backup and restore work on SQLite databases only; back up PostgreSQL with "
            "pg_dump, and keep a copy of secret.key from the data directory"
        )
    return Path(url.removeprefix("sqlite:///"))


def is_sqlite_file(path: Path) -> bool:
    """True when ``path`` starts with the SQLite header (an empty file is not a database)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def parse_secret(data: bytes, where: str) -> bytes:
    """The instance secret encoded in a ``secret.key`` file's bytes."""
    try:
        secret = base64.urlsafe_b64decode(data.strip())
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) < SECRET_BYTES:
        raise BackupError(f"{where} does not hold a valid StateRelay secret key")
    return secret


def key_opens(facts: DatabaseFacts, secret: bytes) -> bool | None:
    """Whether ``secret`` decrypts the database's encrypted values (None: it holds none)."""
    if facts.encrypted_sample is None:
        return None
    try:
        SecretBox(secret, "webhook-secrets").decrypt(facts.encrypted_sample)
    except ValueError:
        return False
    return True


@contextmanager
def open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that leaves no trace in the database's directory."""
    # Without a -wal file the main file is the whole database; ``immutable`` then keeps
    # SQLite from creating -wal/-shm files, which would belong to whoever runs the command.
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro" if wal.exists() else "immutable=1"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def inspect_database(
    path: Path, *, thorough: bool = True, migrations: Sequence[Traversable] | None = None
) -> DatabaseFacts:
    """Validate a StateRelay database file and describe it; ``BackupError`` if it is not one.

    ``thorough`` runs SQLite's full ``integrity_check``; otherwise the faster ``quick_check``.
    A database is newer than this release when it has a migration neither the bundled ones
    nor the integrations' ``migrations`` folders (by default the registry's) know.
    """
    if not is_sqlite_file(path):
        raise BackupError(f"{path} is not an SQLite database")
    folders = migration_folders() if migrations is None else migrations
    try:
        with open_read_only(path) as conn:
            return _inspect(conn, path, thorough=thorough, folders=folders)
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "unable to open" in message or "readonly" in message:
            raise BackupError(f"cannot open {path}: {message}") from None
        raise BackupError(f"{path} cannot be read as a database: {message}") from None


def _inspect(
    conn: sqlite3.Connection, path: Path, *, thorough: bool, folders: Sequence[Traversable]
) -> DatabaseFacts:
    check = "integrity_check" if thorough else "quick_check"
    problems = [row[0] for row in conn.execute(f"PRAGMA {check}(5)")]
    if problems != ["ok"]:
        raise BackupError(f"{path} is damaged: {'; '.join(problems)}")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    missing = [name for name in CORE_TABLES if name not in tables]
    if missing:
        raise BackupError(
            f"{path} is not a StateRelay database (it has no {', '.join(missing)} table)"
        )
    migrations = tuple(
        int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
    )
    if not migrations:
        raise BackupError(f"{path} is not a StateRelay database (no schema version)")
    known = {version for version, _, _ in all_migrations(folders)}
    newer = [version for version in migrations if version not in known]
    if newer:
        raise BackupError(
            f"{path} has schema version {max(newer)}, newer than this StateRelay "
            f"({__version__}) knows; upgrade StateRelay first"
        )
    sample = None
    if "webhooks" in tables:
        row = conn.execute("SELECT secret_ciphertext FROM webhooks LIMIT 1").fetchone()
        sample = None if row is None else str(row[0])

    tenants, users, devices = conn.execute(
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users),"
        " (SELECT count(*) FROM devices)"
    ).fetchone()
    return DatabaseFacts(
        schema_version=max(migrations),
        migrations=migrations,
        tenants=int(tenants),
        users=int(users),
        devices=int(devices),
        encrypted_sample=sample,
    )


def snapshot(
    source: Path,
    target: Path,
    *,
    pages_per_step: int = PAGES_PER_STEP,
    pause: float = STEP_PAUSE,
    progress: Progress | None = None,
) -> None:
    """Copy the live database ``source`` to a new single-file database ``target``."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source} yet; nothing to back up")
    if not is_sqlite_file(source):
        raise BackupError(f"{source} is not an SQLite database")

    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)
        if remaining and pause:
            time.sleep(pause)  # leave the disk to the server between steps

    src = sqlite3.connect(source, isolation_level=None)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        src.execute("PRAGMA query_only = 1")
        # One read transaction for the whole copy: every step sees the same snapshot, so
        # commits by the server do not make the backup start over.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        src.backup(dst, pages=pages_per_step, progress=step)
        src.execute("COMMIT")
        # The copy carries the source's WAL flag; a backup is one self-contained file.
        dst.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from None
    finally:
        src.close()
        dst.close()


def create_backup(
    settings: Settings,
    archive: Path,
    *,
    overwrite: bool = False,
    pages_per_step: int = PAGES_PER_STEP,
    pause: float = STEP_PAUSE,
    progress: Progress | None = None,
) -> BackupResult:
    """Write a backup archive of the instance to ``archive`` (atomically, mode 0600)."""
    started = time.monotonic()
    database = sqlite_path(settings)
    archive = archive.expanduser().absolute()
    if archive.exists() and not overwrite:
        raise BackupError(f"{archive} already exists; use --force to overwrite it")
    if not archive.parent.is_dir():
        raise BackupError(f"the directory {archive.parent} does not exist")
    key_file = settings.secret_key_path
    try:
        key_bytes = key_file.read_bytes()
    except FileNotFoundError:
        key_bytes = None
    except OSError as exc:
        raise BackupError(f"cannot read {key_file}: {exc.strerror or exc}") from None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=archive.parent))
    except OSError as exc:
        raise BackupError(f"cannot write in {archive.parent}: {exc.strerror or exc}") from None
    try:
        copy = staging / DB_MEMBER
        snapshot(database, copy, pages_per_step=pages_per_step, pause=pause, progress=progress)
        facts = inspect_database(copy)
        warnings = _key_warnings(facts, key_file, key_bytes)
        manifest = {
            "format": ARCHIVE_FORMAT,
            "version": ARCHIVE_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "staterelay_version": __version__,
            "sqlite_version": sqlite3.sqlite_version,
            "schema_version": facts.schema_version,
            "database": DB_MEMBER,
            "database_sha256": _sha256(copy),
            "secret_key": key_bytes is not None,
        }
        partial = staging / "archive"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                _add_bytes(tar, MANIFEST_MEMBER, json.dumps(manifest, indent=2).encode() + b"\n")
                tar.add(copy, arcname=DB_MEMBER, filter=_private)
                if key_bytes is not None:
                    _add_bytes(tar, KEY_MEMBER, key_bytes)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, archive)
        _fsync_dir(archive.parent)
        size = archive.stat().st_size
    except OSError as exc:
        raise BackupError(f"cannot write {archive}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BackupResult(
        path=archive,
        facts=facts,
        bytes=size,
        seconds=time.monotonic() - started,
        with_key=key_bytes is not None,
        warnings=tuple(warnings),
    )


def _key_warnings(facts: DatabaseFacts, key_file: Path, key_bytes: bytes | None) -> list[str]:
    """Problems with the key that a backup still goes ahead with: the database matters most."""
    if key_bytes is None:
        if facts.encrypted_sample is None:
            return []
        return [f"{key_file} is missing; the backup's webhook secrets cannot be decrypted"]
    try:
        secret = parse_secret(key_bytes, str(key_file))
    except BackupError as exc:
        return [str(exc)]
    if key_opens(facts, secret) is False:
        return [f"{key_file} does not decrypt this database's secrets"]
    return []


@dataclass(frozen=True)
class _Unpacked:
    database: Path
    key: bytes | None
    created_at: str | None


def _unpack(source: Path, staging: Path) -> _Unpacked:
    """The database (and key) in a backup archive, or a bare SQLite file, copied to staging."""
    target = staging / DB_MEMBER
    if is_sqlite_file(source):
        # The backup API also reads a -wal file next to it, which a plain copy would miss.
        snapshot(source, target, pause=0)
        return _Unpacked(database=target, key=None, created_at=None)
    if not tarfile.is_tarfile(source):
        raise BackupError(f"{source} is neither a StateRelay backup nor an SQLite database")
    try:
        with tarfile.open(source, mode="r:*") as tar:
            manifest = _manifest(tar, source)
            _extract(tar, DB_MEMBER, target, source)
            key = None
            if manifest.get("secret_key"):
                key = _read_member(tar, KEY_MEMBER, source)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"{source} is damaged: {exc}") from None
    if _sha256(target) != manifest.get("database_sha256"):
        raise BackupError(f"{source} is damaged: the database does not match its checksum")
    created = manifest.get("created_at")
    return _Unpacked(database=target, key=key, created_at=str(created) if created else None)


def restore_backup(settings: Settings, source: Path, *, replace: bool = False) -> RestoreResult:
    """Put a backup in place of the instance's database (and key); the server must be stopped.

    Replaced files are renamed ``<name>.before-restore-<time>``, never deleted.
    """
    database = sqlite_path(settings)
    source = source.expanduser()
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupError(f"cannot create {data_dir}: {exc.strerror or exc}") from None
    # Holding the lock also keeps a server from starting halfway through.
    lock = InstanceLock(data_dir)
    try:
        lock.acquire()
    except InstanceRunning as exc:
        raise BackupError(str(exc)) from None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=database.parent))
        try:
            unpacked = _unpack(source, staging)
            facts = inspect_database(unpacked.database)
            key_file = settings.secret_key_path
            current_key = _read_key(key_file)
            secret = unpacked.key if unpacked.key is not None else current_key
            if secret is None and facts.encrypted_sample is not None:
                raise BackupError(
                    f"{source} holds no secret key and {key_file} does not exist; the "
                    "database's secrets need the key it was made with"
                )
            if secret is not None:
                where = str(source) if unpacked.key is not None else str(key_file)
                if key_opens(facts, parse_secret(secret, where)) is False:
                    raise BackupError(
                        f"the secret key in {where} does not decrypt this database's "
                        "secrets; restore the archive made by `staterelay backup`"
                    )
            existing = [
                path
                for path in (database, _sidecar(database, "-wal"))
                if path.exists() and path.stat().st_size > 0
            ]
            if existing and not replace:
                raise BackupError(
                    f"{database} already exists; use --force to replace it (it is kept "
                    "as a .before-restore file)"
                )
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            aside: list[Path] = []
            if database.exists():
                aside += _set_aside(database, stamp)
            os.chmod(unpacked.database, 0o600)
            _give_to_owner_of(unpacked.database, data_dir)
            os.replace(unpacked.database, database)
            key_restored = False
            if unpacked.key is not None and unpacked.key != current_key:
                if key_file.exists():
                    aside.append(_rename_aside(key_file, stamp))
                _write_private(key_file, unpacked.key)
                _give_to_owner_of(key_file, data_dir)
                key_restored = True
            _fsync_dir(database.parent)
            _fsync_dir(data_dir)
        except OSError as exc:
            raise BackupError(f"cannot restore into {data_dir}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    return RestoreResult(
        database=database,
        facts=facts,
        created_at=unpacked.created_at,
        key_restored=key_restored,
        set_aside=tuple(aside),
    )


def _set_aside(database: Path, stamp: str) -> list[Path]:
    """Fold the WAL into the current database and rename it; refuse if anyone has it open."""
    try:
        conn = sqlite3.connect(database, isolation_level=None, timeout=0)
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy is not None and busy[0]:
                raise BackupError(f"{database} is in use by another process; stop it first")
            # Leaving WAL mode needs the only connection: a second guard against a user.
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(f"{database} is in use by another process; stop it first") from None
    except sqlite3.DatabaseError:
        pass  # a damaged database is set aside as it is, WAL and all
    moved = [_rename_aside(database, stamp)]
    for suffix in ("-wal", "-shm", "-journal"):
        extra = _sidecar(database, suffix)
        if extra.exists():
            moved.append(_rename_aside(extra, stamp))
    return moved


def _give_to_owner_of(path: Path, data_dir: Path) -> None:
    """When root restores a service's data directory, the files must stay the service's."""
    if os.geteuid() != 0:
        return
    owner = data_dir.stat()
    if owner.st_uid != 0:
        os.chown(path, owner.st_uid, owner.st_gid)


def _sidecar(database: Path, suffix: str) -> Path:
    return database.with_name(database.name + suffix)


def _rename_aside(path: Path, stamp: str) -> Path:
    target = path.with_name(f"{path.name}.before-restore-{stamp}")
    os.replace(path, target)
    return target


def _read_key(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_private(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.restore")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


def _manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(_read_member(tar, MANIFEST_MEMBER, source))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError(f"{source} has an unreadable {MANIFEST_MEMBER}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise BackupError(f"{source} is not a StateRelay backup")
    version = manifest.get("version")
    if version != ARCHIVE_VERSION:
        raise BackupError(
            f"{source} is a backup of format version {version}; this StateRelay reads "
            f"version {ARCHIVE_VERSION}"
        )
    return manifest


def _member(tar: tarfile.TarFile, name: str, source: Path) -> tarfile.TarInfo:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise BackupError(f"{source} is incomplete: it has no {name}") from None
    if not member.isfile():
        raise BackupError(f"{source} is damaged: {name} is not a file")
    return member


def _read_member(tar: tarfile.TarFile, name: str, source: Path) -> bytes:
    handle = tar.extractfile(_member(tar, name, source))
    assert handle is not None  # a regular file always has contents
    with handle:
        return handle.read()


def _extract(tar: tarfile.TarFile, name: str, target: Path, source: Path) -> None:
    # Members are copied by name into files we create: nothing in the archive chooses a path.
    handle = tar.extractfile(_member(tar, name, source))
    assert handle is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with handle, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(handle, out)
        out.flush()
        os.fsync(out.fileno())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
