"""``staterelay doctor``: read-only checks of an instance, each with what to do about it.

Nothing here writes: the database is opened read-only (immutable when no server has it
open, so no ``-wal``/``-shm`` files appear with the wrong owner), and a missing data
directory, database or key is reported, not created.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from staterelay.app.integration import Integration, SettingsSection
from staterelay.app.registry import BUILTIN, migration_folders
from staterelay.ops.backup import (
    BackupError,
    DatabaseFacts,
    inspect_database,
    is_sqlite_file,
    key_opens,
    open_read_only,
    parse_secret,
)
from staterelay.ops.checks import Check, span
from staterelay.ops.lock import running_pid
from staterelay.settings import Settings
from staterelay.store.sqlite.engine import SQLiteEngine, all_migrations

# A system clock before this is certainly wrong (a board without a battery-backed clock).
EARLIEST_PLAUSIBLE_TIME = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
FUTURE_TOLERANCE = 300.0
IDLE_WARNING_DAYS = 365
OUTBOX_STUCK_SECONDS = 3600.0
SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
_LOCAL_HOSTS = {"localhost", "localhost.localdomain"}
MIB = 1024 * 1024


def format_check(check: Check) -> str:
    """The lines ``doctor`` prints for one check."""
    line = f"{check.status:<4}  {check.name:<11} {check.message}"
    if check.fix:
        line += f"\n{'':17}fix: {check.fix}"
    return line


def config_failure(message: str) -> Check:
    """The one check when the configuration does not load."""
    return Check("config", "FAIL", message, "correct the key named above and run doctor again")


def run_checks(
    settings: Settings,
    config_file: Path | None,
    *,
    clock: Callable[[], float] = time.time,
    integrations: Sequence[Integration] = BUILTIN,
) -> list[Check]:
    """Every check, in the order ``doctor`` prints them; each integration adds its own."""
    checks = [
        Check(
            "config",
            "OK",
            f"loaded {config_file}" if config_file else "no config file; defaults and environment",
        ),
        _data_dir(settings),
    ]
    facts, database_checks = _database(settings, clock, integrations)
    checks += database_checks
    disk = _free_space(settings)
    if disk is not None:
        checks.append(disk)
    checks.append(_secret_key(settings, facts))
    checks.append(_durability(settings))
    checks.append(_public_url(settings))
    for integration in integrations:
        if integration.section is not None:
            checks.append(settings_check(integration.section, settings))
        checks.extend(integration.doctor_checks(settings))
    if facts is not None:
        checks.append(_clock(settings, clock()))
        checks.append(_outbox(settings, clock()))
    checks.append(_server(settings))
    return checks


def _owner_note(path: Path, info: os.stat_result) -> str | None:
    if info.st_uid != os.geteuid():
        return (
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); run "
            "StateRelay commands as the user the server runs as"
        )
    return None


def _data_dir(settings: Settings) -> Check:
    path = settings.data_dir
    try:
        info = path.stat()
    except FileNotFoundError:
        return Check(
            "data dir", "WARN", f"{path} does not exist yet", "`staterelay serve` creates it"
        )
    if not stat.S_ISDIR(info.st_mode):
        return Check("data dir", "FAIL", f"{path} is not a directory", "point --data-dir elsewhere")
    if info.st_mode & 0o022:
        return Check(
            "data dir",
            "FAIL",
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})",
            f"chmod 700 {path}",
        )
    note = _owner_note(path, info)
    if note:
        return Check("data dir", "WARN", note, "e.g. sudo -u staterelay staterelay doctor")
    return Check("data dir", "OK", str(path))


def _database_path(settings: Settings) -> Path | None:
    url = settings.database_url
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _database(
    settings: Settings, clock: Callable[[], float], integrations: Sequence[Integration]
) -> tuple[DatabaseFacts | None, list[Check]]:
    path = _database_path(settings)
    folders = migration_folders(integrations)
    if path is None:
        # Imported here: asyncpg has no place in a SQLite server (the CLI module imports this).
        from staterelay.ops.doctor_postgres import postgres_checks

        return None, postgres_checks(settings, clock=clock, migrations=folders)
    if not path.exists():
        return None, [
            Check(
                "database",
                "WARN",
                f"no database at {path} yet",
                "`staterelay serve` creates it on first start",
            )
        ]
    if not os.access(path, os.R_OK):
        return None, [Check("database", "FAIL", f"cannot read {path}", _readable_fix(path))]
    if not is_sqlite_file(path):
        return None, [
            Check(
                "database",
                "FAIL",
                f"{path} is not an SQLite database",
                "restore your latest backup: staterelay restore FILE --force",
            )
        ]
    try:
        facts = inspect_database(path, thorough=False, migrations=folders)
    except BackupError as exc:
        return None, [Check("database", "FAIL", str(exc), _database_fix(str(exc), path))]
    except sqlite3.Error as exc:
        return None, [Check("database", "FAIL", f"cannot read {path}: {exc}", _readable_fix(path))]
    checks: list[Check] = []
    pending = sorted({v for v, _, _ in all_migrations(folders)} - set(facts.migrations))
    size = path.stat().st_size
    summary = (
        f"{path} ({_size(size)}, schema version {facts.schema_version}, "
        f"{facts.devices} devices, {facts.users} users); quick_check ok"
    )
    if pending:
        checks.append(
            Check(
                "database",
                "WARN",
                f"{summary}; migrations {', '.join(map(str, pending))} not applied yet",
                "restart the server: `staterelay serve` applies them at start",
            )
        )
    else:
        checks.append(Check("database", "OK", summary))
    if _is_wal(path):
        checks.append(Check("journal", "OK", "journal_mode=wal"))
    else:
        checks.append(
            Check(
                "journal",
                "WARN",
                "journal_mode is not wal",
                "start the server once: it switches the database to WAL",
            )
        )
    return facts, checks


def _free_space(settings: Settings) -> Check | None:
    """Room left on the file system of the SQLite database (or of the data directory)."""
    path = _database_path(settings)
    if path is None:
        return None
    where = next((p for p in (path.parent, *path.parents) if p.exists()), None)
    if where is None:
        return None
    info = os.statvfs(where)
    free = info.f_bavail * info.f_frsize
    floor = settings.database.min_free_mb * MIB
    summary = f"{free / MIB:.0f} MiB free under {where}"
    if free < floor:
        return Check(
            "disk",
            "FAIL",
            f"{free / MIB:.1f} MiB free under {where}, below database.min_free_mb "
            f"({settings.database.min_free_mb} MiB): writes will soon fail with 507",
            "free space on that disk (old backups, logs), or move the data directory to a "
            "bigger one; the server picks up freed space without a restart",
        )
    return Check("disk", "OK", summary)


def _readable_fix(path: Path) -> str:
    return f"make {path} (and its -wal and -shm files) readable by this user"


def _is_wal(path: Path) -> bool:
    # Bytes 18 and 19 of the header are 2 in a WAL database; reading them needs no
    # connection (an immutable one would report its own mode, not the file's).
    with path.open("rb") as handle:
        header = handle.read(20)
    return header[18:20] == b"\x02\x02"


def _database_fix(message: str, path: Path) -> str:
    if "newer than" in message:
        return "upgrade StateRelay to the version that wrote this database"
    if "cannot open" in message:
        return _readable_fix(path)
    if "damaged" in message or "cannot be read" in message:
        return "stop the server and restore your latest backup: staterelay restore FILE --force"
    return "point the config at the right database, or restore a backup"


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _secret_key(settings: Settings, facts: DatabaseFacts | None) -> Check:
    path = settings.secret_key_path
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        if facts is not None and facts.encrypted_sample is not None:
            return Check(
                "secret key",
                "FAIL",
                f"{path} is missing, and the database's webhook secrets need it",
                "restore secret.key from the backup archive (staterelay restore FILE --force)",
            )
        return Check(
            "secret key", "WARN", f"{path} does not exist yet", "`staterelay serve` creates it"
        )
    except PermissionError:
        return Check("secret key", "FAIL", f"cannot read {path}", _readable_fix(path))
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return Check(
            "secret key",
            "FAIL",
            f"{path} is readable or writable by other users (mode {mode:o})",
            f"chmod 600 {path}",
        )
    try:
        secret = parse_secret(data, str(path))
    except BackupError as exc:
        return Check(
            "secret key", "FAIL", str(exc), "restore secret.key from your latest backup archive"
        )
    if facts is not None and key_opens(facts, secret) is False:
        return Check(
            "secret key",
            "FAIL",
            f"{path} does not decrypt the database's webhook secrets: it is another key",
            "restore the secret.key that belongs to this database (from its backup archive)",
        )
    note = _owner_note(path, info)
    if note:
        return Check("secret key", "WARN", note, "chown it to the server's user")
    return Check("secret key", "OK", f"{path} (mode 600)")


def _durability(settings: Settings) -> Check:
    durability = settings.database.durability
    wanted = SQLiteEngine(Path(os.devnull), durability=durability).synchronous
    # synchronous is per connection: confirm this SQLite honours the level the server sets.
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA synchronous = {wanted}")
        actual = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        conn.close()
    if actual != SYNCHRONOUS_LEVELS[wanted]:
        return Check(
            "durability",
            "FAIL",
            f"this SQLite ignores synchronous={wanted} (reads back {actual})",
            "install a Python built with a standard SQLite",
        )
    if durability == "normal":
        return Check(
            "durability",
            "WARN",
            "database.durability: normal (synchronous=NORMAL): the last changes before a "
            "power cut may be lost",
            "set database.durability: full unless you are sparing an SD card on purpose",
        )
    return Check(
        "durability",
        "OK",
        "database.durability: full (synchronous=FULL): acknowledged changes survive a power cut",
    )


def _is_local(host: str) -> bool:
    if host.lower() in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_url(settings: Settings) -> Check:
    url = settings.public_url
    parts = urlsplit(url)
    if parts.scheme == "https":
        return Check("public url", "OK", url)
    if _is_local(parts.hostname or ""):
        return Check(
            "public url",
            "OK",
            f"{url} (fine on this machine; Alexa and IFTTT need an https URL)",
        )
    return Check(
        "public url",
        "WARN",
        f"{url} is plain http on a network name: passwords and tokens cross the network "
        "unencrypted, and Alexa and IFTTT refuse it",
        "put Caddy in front (Caddyfile.example) and set server.public_url to https://...",
    )


def settings_check(section: SettingsSection, settings: Settings) -> Check:
    """Whether an integration's settings section is unused, complete, or set but incomplete."""
    name = section.name
    values = section.read(settings)
    # Every section is a dataclass of defaults: its class called bare is the unset section.
    assert dataclasses.is_dataclass(values)
    assert not isinstance(values, type)
    defaults = type(values)()
    if values == defaults:
        return Check(name, "OK", "not configured (optional)")
    missing = [key for key in section.required if not getattr(values, key)]
    if missing:
        keys = ", ".join(f"{name}.{key}" for key in missing)
        set_keys = ", ".join(
            f"{name}.{f.name}"
            for f in dataclasses.fields(values)
            if getattr(values, f.name) != getattr(defaults, f.name)
        )
        return Check(
            name,
            "FAIL",
            f"partly configured ({set_keys} set) but {keys} missing",
            f"set {keys}, or remove the other {name} keys",
        )
    if section.public_https and urlsplit(settings.public_url).scheme != "https":
        return Check(
            name,
            "FAIL",
            f"configured, but server.public_url ({settings.public_url}) is not https",
            f"{section.title} only calls https URLs: "
            "set server.public_url to the https name of your reverse proxy",
        )
    return Check(name, "OK", "configured")


def _clock(settings: Settings, now: float) -> Check:
    if now < EARLIEST_PLAUSIBLE_TIME:
        return Check(
            "clock",
            "FAIL",
            f"the system clock says {_when(now)}, which cannot be right",
            "set the time (enable NTP: timedatectl set-ntp true)",
        )
    path = _database_path(settings)
    assert path is not None
    with open_read_only(path) as conn:
        newest = conn.execute(
            "SELECT max(t) FROM ("
            " SELECT max(created_at) AS t FROM activity_log"
            " UNION ALL SELECT max(created_at) FROM outbox"
            " UNION ALL SELECT max(updated_at) FROM devices)"
        ).fetchone()[0]
    if newest is None:
        return Check("clock", "OK", f"{_when(now)}; no activity recorded yet")
    newest = float(newest)
    if newest > now + FUTURE_TOLERANCE:
        return Check(
            "clock",
            "WARN",
            f"the database has activity from {_when(newest)}, {span(newest - now)} after "
            f"the system clock ({_when(now)}): the clock has gone back",
            "fix the system time (timedatectl set-ntp true); tokens and sessions depend on it",
        )
    if now - newest > IDLE_WARNING_DAYS * 86400:
        return Check(
            "clock",
            "WARN",
            f"the newest activity is from {_when(newest)}, {span(now - newest)} ago "
            f"(system clock: {_when(now)})",
            "if the instance was in use since then, the system clock is wrong",
        )
    return Check("clock", "OK", f"{_when(now)}; newest activity {_when(newest)}")


def _outbox(settings: Settings, now: float) -> Check:
    path = _database_path(settings)
    assert path is not None
    with open_read_only(path) as conn:
        pending, oldest = conn.execute(
            "SELECT count(*), min(created_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        dead = int(conn.execute("SELECT count(*) FROM outbox WHERE status = 'dead'").fetchone()[0])
    summary = f"{pending} pending, {dead} given up"
    if oldest is not None and now - float(oldest) > OUTBOX_STUCK_SECONDS:
        return Check(
            "outbox",
            "WARN",
            f"{summary}; the oldest pending delivery is {span(now - float(oldest))} old",
            "is the server running? Check the destinations' delivery history "
            "(GET /api/v1/webhooks/{id}/deliveries) for their errors",
        )
    if dead:
        return Check(
            "outbox",
            "WARN",
            f"{summary}: {dead} deliveries failed on every retry",
            "see the failing webhooks' delivery history (GET /api/v1/webhooks/{id}/deliveries)",
        )
    if pending:
        return Check("outbox", "OK", f"{summary}; oldest {span(now - float(oldest))} old")
    return Check("outbox", "OK", summary)


def _server(settings: Settings) -> Check:
    pid = running_pid(settings.data_dir)
    if pid is None:
        return Check("server", "OK", "not running on this data directory")
    return Check("server", "OK", f"running (pid {pid})" if pid else "running")


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
