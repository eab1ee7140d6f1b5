"""SQLite plumbing: a reader and a writer connection, group commit, migrations.

Reads run inline on the event loop thread, on a connection of their own: a point lookup in
a WAL database takes tens of microseconds, far less than a round trip through a worker
thread, and WAL readers never wait for the writer.

Every write is a synchronous function of the writer connection. Writes queued while the
previous transaction is being made durable are run together in the next transaction (group
commit). Taking the write lock (``BEGIN IMMEDIATE``, which may wait for another process such
as the CLI) and the ``COMMIT`` with its fsync run on the writer thread; the statements in
between take microseconds and run on the loop, which avoids handing the GIL back and forth
for every statement. No caller is answered before the ``COMMIT`` holding its write returns,
and one failing write never spoils its neighbours (see ``_run_writes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar, cast

from staterelay.core.errors import StorageFull
from staterelay.core.records import PoolStats, StorageStats
from staterelay.core.records.quick_init import quick_init
from staterelay.core.storage.migrations import Migration, merged

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 256
# Answers ``read_cached`` keeps while the database is unchanged (forgotten all at once).
READ_CACHE_MAX = 4096
_DATA_VERSION = "PRAGMA data_version"
_MISSING: Any = object()
BUSY_TIMEOUT_MS = 5000
# Primary result codes of a write the disk refused: full, or an I/O error (which is what a
# full disk looks like to SQLite while it grows the WAL or syncs it).
STORAGE_CODES = frozenset({13, 10})  # SQLITE_FULL, SQLITE_IOERR
FULL_LOG_EVERY = 60.0
# A reader only waits while a crashed writer's WAL is recovered; never block the loop long.
READER_BUSY_TIMEOUT_MS = 200
# The WAL holds whole pages, and a change touches a dozen (its rows and their indexes, a few
# bytes each): 1 KiB pages write a quarter of what 4 KiB pages do per commit, which is what
# wears a Raspberry Pi's SD card. SQLite's default was 1 KiB until 2016.
PAGE_SIZE = 1024
# Checkpoint when the WAL reaches 4 MiB, SQLite's default in bytes (1,000 pages of 4 KiB):
# pages a busy household changes again and again are copied back once per checkpoint.
WAL_CHECKPOINT_PAGES = 4 * 1024 * 1024 // PAGE_SIZE
# An older database is rewritten into PAGE_SIZE pages once when it opens, up to this size
# (VACUUM takes a while on a Pi and needs as much free space again).
REPAGE_MAX_BYTES = 512 * 1024 * 1024


def connect(
    path: Path, *, synchronous: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """Open a connection with StateRelay's pragmas; transactions are issued explicitly."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new database only; see repage()
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Temporary tables (the deliverer's leases) live in memory, never in a file.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled SQLite migration, in order."""
    folder = resources.files("staterelay.store").joinpath("migrations/sqlite")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        version = int(name.split("_", 1)[0])
        found.append((version, name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def all_migrations(folders: Sequence[Traversable] = ()) -> list[Migration]:
    """The bundled migrations and those of integrations' ``folders``, in version order."""
    return merged(migration_files(), folders, "sqlite")


def repage(conn: sqlite3.Connection, path: Path) -> bool:
    """Rewrite a database made with another page size into ``PAGE_SIZE`` pages, once.

    Best effort: it needs the database to itself (another process using it, such as a
    command run while the server starts, makes it wait for the next start), the file no
    larger than ``REPAGE_MAX_BYTES`` and as much free space again. Returns True when done.
    """
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    if size == PAGE_SIZE:
        return False
    try:
        length = path.stat().st_size
        disk = os.statvfs(path.parent)
    except OSError:
        return False
    free = disk.f_bavail * disk.f_frsize
    if length > REPAGE_MAX_BYTES or free < 2 * length:
        return False
    started = time.monotonic()
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        _LOGGER.info("database kept in %d-byte pages for now: %s", size, exc)
        return False
    finally:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _LOGGER.info(
        "rewrote the database (%.1f MiB) from %d-byte into %d-byte pages in %.1f s, once:"
        " each change now writes less to the disk",
        length / 2**20,
        size,
        PAGE_SIZE,
        time.monotonic() - started,
    )
    return True


def apply_migrations(conn: sqlite3.Connection, folders: Sequence[Traversable] = ()) -> list[int]:
    """Apply pending migrations (bundled and of ``folders``), each in its own transaction;
    returns the versions applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied: list[int] = []
    for version, name, sql in all_migrations(folders):
        if version in done:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(version)
        _LOGGER.info("applied migration %s", name)
    return applied


def pending_migrations(conn: sqlite3.Connection, folders: Sequence[Traversable] = ()) -> list[int]:
    """Versions of migrations (bundled and of ``folders``) not yet applied."""
    try:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except sqlite3.OperationalError:
        done = set()
    return [v for v, _, _ in all_migrations(folders) if v not in done]


def _split_sql(sql: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


class SQLiteEngine:
    """Owns the writer and reader connections and their threads."""

    def __init__(
        self, path: Path, *, durability: str, migrations: Sequence[Traversable] = ()
    ) -> None:
        self.path = path
        self.synchronous = "FULL" if durability == "full" else "NORMAL"
        self.migrations = tuple(migrations)
        """Integrations' migration folders, applied with the bundled migrations."""
        self._write_pool: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pending: list[_Write] = []
        # Writes that may wait for a transaction that writes the file anyway (see
        # ``write_soon``), and when the oldest of them must be written regardless.
        self._riders: list[_Write] = []
        self._riders_due: float | None = None
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self._cache: dict[Hashable, Any] = {}
        self._cache_version = -1
        self._pass_version: int | None = None
        self.storage_full_errors = 0
        self._full_logged_at = -FULL_LOG_EVERY
        self.written: dict[Hashable, Any] = {}
        """Records write functions remember between transactions, keyed as they choose.

        Everything is forgotten whenever work of a transaction is undone (a write that
        raised, a failed ``COMMIT``), so what is left was committed, or belongs to the open
        transaction. Another process may still have changed the database since: a write
        function using a record checks first that it is current (a device by its version).
        """

    async def open(self) -> None:
        """Create the file if needed, apply migrations and start the writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._closing = False
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._writer = await loop.run_in_executor(
            self._write_pool, lambda: connect(self.path, synchronous=self.synchronous)
        )
        await loop.run_in_executor(self._write_pool, repage, self._writer, self.path)
        await loop.run_in_executor(
            self._write_pool, apply_migrations, self._writer, self.migrations
        )
        self._reader = connect(
            self.path, synchronous=self.synchronous, busy_timeout_ms=READER_BUSY_TIMEOUT_MS
        )
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def close(self) -> None:
        """Commit what is queued, close both connections and join their threads."""
        self._closing = True
        self._wake.set()
        if self._writer_task is not None:
            await self._writer_task
            self._writer_task = None
        loop = asyncio.get_running_loop()
        self._cache.clear()
        self.written.clear()
        self._cache_version = -1
        self._pass_version = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None and self._write_pool is not None:
            await loop.run_in_executor(self._write_pool, self._checkpoint_and_close, self._writer)
            self._writer = None
        if self._write_pool is not None:
            self._write_pool.shutdown(wait=True)
            self._write_pool = None

    @staticmethod
    def _checkpoint_and_close(conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    def pool_stats(self) -> PoolStats:
        """Open connections, the writer busy in a transaction, and writes queued for it.

        Reads run inline on the loop, so the reader is never busy when anyone looks.
        """
        writer = self._writer
        return PoolStats(
            size=(self._reader is not None) + (writer is not None),
            max_size=2,
            in_use=int(writer is not None and writer.in_transaction),
            waiting=len(self._pending),
        )

    def storage_stats(self) -> StorageStats:
        """Free bytes on the file system of the database (None when it cannot be read)."""
        try:
            info = os.statvfs(self.path.parent)
        except OSError:
            free = None
        else:
            free = info.f_bavail * info.f_frsize
        return StorageStats(free_bytes=free, full_errors=self.storage_full_errors)

    def _refused_by_disk(self, error: BaseException) -> BaseException:
        """``StorageFull`` for a write the disk refused; any other error unchanged."""
        if not isinstance(error, sqlite3.Error):
            return error
        code = getattr(error, "sqlite_errorcode", None)
        if code is None or code & 0xFF not in STORAGE_CODES:
            return error
        self.storage_full_errors += 1
        now = time.monotonic()
        if now - self._full_logged_at >= FULL_LOG_EVERY:
            # Once a minute at most: a full disk fails every write until space returns.
            self._full_logged_at = now
            _LOGGER.error(
                "writes fail for lack of disk space under %s (%d so far): %s",
                self.path.parent,
                self.storage_full_errors,
                error,
            )
        refused = StorageFull(
            "the database has no room for this change (the disk is full or failing); "
            "nothing of it was kept"
        )
        refused.__cause__ = error
        return refused

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader connection; it sees only committed data."""
        if self._reader is None:
            raise RuntimeError("the database is not open")
        return _read_in_snapshot(fn, self._reader)

    async def read_statement(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Like ``read`` for a ``fn`` that runs ONE statement, which is its own snapshot."""
        if self._reader is None:
            raise RuntimeError("the database is not open")
        return fn(self._reader)

    def read_cached(self, key: Hashable, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Like ``read_statement``, answered from memory while the database is unchanged.

        ``PRAGMA data_version`` on the reader changes whenever any other connection commits
        (this process's writer, the CLI, another process), so an answer read at one data
        version is exactly what ``fn`` would read again at that version. The version is read
        before and after ``fn``: an answer that a commit may have raced is not kept. Answers
        are shared: callers must treat them as immutable (records are frozen).

        The version is read at most once per pass of the event loop (see ``_data_version``):
        a hit then costs a dictionary lookup. Synchronous on purpose: it never waits, and a
        coroutine per read would cost more than the lookup.
        """
        reader = self._reader
        if reader is None:
            raise RuntimeError("the database is not open")
        version = self._data_version(reader)
        cache = self._cache
        if version != self._cache_version:
            cache.clear()
            self._cache_version = version
        else:
            hit = cache.get(key, _MISSING)
            if hit is not _MISSING:
                return cast(T, hit)
        value = fn(reader)
        if reader.execute(_DATA_VERSION).fetchone()[0] == version:
            if len(cache) >= READ_CACHE_MAX:
                cache.clear()
            cache[key] = value
        return value

    def _data_version(self, reader: sqlite3.Connection) -> int:
        """The reader's data version, read once per pass of the event loop.

        Every callback that runs in one pass of the loop was ready before the pass began:
        each request it serves had arrived, and any write it waited for had committed (a
        write's result comes back through a callback of a later pass). A version read during
        the pass is therefore one the database held while each of them was in flight, so
        they may all be answered from it. The reading is forgotten by a callback queued for
        the next pass, which runs before anything that becomes ready after this one.
        """
        version = self._pass_version
        if version is None:
            version = self._pass_version = reader.execute(_DATA_VERSION).fetchone()[0]
            asyncio.get_running_loop().call_soon(self._forget_pass_version)
        return version

    def _forget_pass_version(self) -> None:
        self._pass_version = None

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, file: bool = True) -> T:
        """Run ``fn`` in a write transaction; returns after its ``COMMIT``.

        ``file=False`` says ``fn`` writes only the writer's in-memory tables (``temp.*``):
        its transaction writes nothing to disk unless other writes share it. A caller
        cancelled while it waits does not take the write back: ``fn`` runs and commits all
        the same (the writer skips answering a future no one awaits).
        """
        return await self.submit(fn, file=file)

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], *, file: bool = True
    ) -> asyncio.Future[T]:
        """Queue ``fn`` like ``write`` without waiting: the future is answered at its
        ``COMMIT`` (for callers that cannot wait, such as a callback)."""
        return self._queue(self._pending, fn, file)

    def write_soon(
        self, fn: Callable[[sqlite3.Connection], T], *, within: float
    ) -> asyncio.Future[T]:
        """Run ``fn`` in a later transaction: the next one that writes the file anyway, or
        one of its own ``within`` seconds from now, whichever comes first (``close`` writes
        it too). Awaiting the answer waits for that ``COMMIT``.

        For writes nobody waits on that may be lost in a crash (delivery results: the row
        is sent again), so that they cost no commit of their own while changes come in.
        """
        due = asyncio.get_running_loop().time() + within
        if self._riders_due is None or due < self._riders_due:
            self._riders_due = due
        return self._queue(self._riders, fn, True)

    def _queue(
        self, queue: list[_Write], fn: Callable[[sqlite3.Connection], T], file: bool
    ) -> asyncio.Future[T]:
        if self._closing or self._writer_task is None:
            raise RuntimeError("the database is closing")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        queue.append(_Write(fn, future, file))
        self._wake.set()
        return future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            riders_due = bool(self._riders) and (
                self._closing or (self._riders_due or 0.0) <= loop.time()
            )
            if not self._pending and not riders_due:
                if self._closing:
                    return
                timeout = None if self._riders_due is None else self._riders_due - loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                continue
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            if riders_due or any(write.file for write in batch):
                batch = [*self._riders, *batch]  # they ride along, written first
                self._riders, self._riders_due = [], None
            assert self._writer is not None
            assert self._write_pool is not None
            fns = [write.fn for write in batch]
            try:
                # Taking the write lock may wait for another process: try it here without
                # waiting (almost always free, and it spares a round trip through the
                # writer thread), and wait for it off the loop only when it is held.
                if not _try_begin(self._writer):
                    await loop.run_in_executor(self._write_pool, _begin, self._writer)
            except sqlite3.Error as exc:
                outcomes: list[tuple[bool, Any]] = [(False, exc)] * len(fns)
            else:
                # The statements themselves take microseconds: run them here, then wait
                # for the COMMIT (and its fsync) on the writer thread.
                outcomes = _run_writes(self._writer, fns, self.written)
                if self._writer.in_transaction:
                    failure = await loop.run_in_executor(self._write_pool, _commit, self._writer)
                    if failure is not None:
                        self.written.clear()
                        outcomes = [(False, failure)] * len(fns)
            for write, (ok, value) in zip(batch, outcomes, strict=True):
                if write.future.done():
                    continue
                if ok:
                    write.future.set_result(value)
                else:
                    write.future.set_exception(self._refused_by_disk(value))
            # Let the requests just answered send their answers (and their clients the next
            # requests) before the next batch holds the loop for its statements: batches come
            # fuller, and answers do not wait behind the next batch.
            await asyncio.sleep(0)


@quick_init
@dataclass(frozen=True, slots=True)
class _Write:
    """A queued write: its function, who waits for it, and whether it writes the file."""

    fn: WriteFn
    future: asyncio.Future[Any]
    file: bool


def _read_in_snapshot(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    # A read transaction makes multi-statement reads see one consistent snapshot.
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _try_begin(conn: sqlite3.Connection) -> bool:
    """``BEGIN IMMEDIATE`` if the write lock is free right now; False if another holds it.

    The busy timeout is lifted for the attempt only, so it never waits; a held lock is
    SQLITE_BUSY at once ("database is locked"), and ``_begin`` then waits for it.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction or "locked" not in str(exc):
            raise
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return True


def _run_writes(
    conn: sqlite3.Connection, fns: list[WriteFn], written: dict[Hashable, Any]
) -> list[tuple[bool, Any]]:
    """Run a batch of writes inside the open transaction.

    The fast path runs the writes back to back. Should one of them raise, the transaction's
    work is rolled back and the batch runs again with a savepoint around each write, so the
    failure is confined to its own write. Writes are functions of the database alone, so
    running one again after a rollback is the same as running it once. ``written`` (the
    engine's remembered records) is emptied whenever work is rolled back.

    SQLite rolls the whole transaction back by itself after some errors (a full disk, an
    I/O error): then every write of the batch fails with that error, and no transaction is
    left open to commit.
    """
    conn.execute("SAVEPOINT batch")
    try:
        outcomes = [(True, fn(conn)) for fn in fns]
    except Exception as exc:  # noqa: BLE001 - the isolated rerun below reports it to its caller
        written.clear()
        if not conn.in_transaction:
            return [(False, exc)] * len(fns)
        conn.execute("ROLLBACK TO batch")
        outcomes = []
        for fn in fns:
            outcome = _isolated(conn, fn, written)
            outcomes.append(outcome)
            if not conn.in_transaction:
                # Rolled back whole: the writes that seemed done are undone too.
                failure = outcome[1]
                return [(False, failure)] * len(fns)
    conn.execute("RELEASE batch")
    return outcomes


def _commit(conn: sqlite3.Connection) -> sqlite3.Error | None:
    """COMMIT; on failure roll back and return the error for every waiting caller."""
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if exc.sqlite_errorcode & 0xFF not in STORAGE_CODES:  # those are reported by the engine
            _LOGGER.error("commit failed: %s", exc)
        return exc
    return None


def _isolated(
    conn: sqlite3.Connection, fn: WriteFn, written: dict[Hashable, Any]
) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT write_op")
    try:
        value = fn(conn)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, not swallowed
        written.clear()
        if conn.in_transaction:
            conn.execute("ROLLBACK TO write_op")
            conn.execute("RELEASE write_op")
        return False, exc
    conn.execute("RELEASE write_op")
    return True, value
