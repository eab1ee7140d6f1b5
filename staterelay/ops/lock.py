"""The instance lock: ``serve`` holds ``<data_dir>/staterelay.lock`` for as long as it runs.

The lock is an advisory ``flock`` on an open file, so the kernel drops it when the process
ends, however it ends (``kill -9`` included): a stale lock file never blocks a start. The
file holds the pid of the holder (for messages) and, on a second line, the public URL it
serves, which commands such as ``alexa setup`` use when the config sets none.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType

LOCK_NAME = "staterelay.lock"

if sys.platform != "win32":
    import fcntl


class InstanceRunning(Exception):
    """Another process holds the lock of this data directory."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"a StateRelay server (pid {pid})" if pid else "a StateRelay server"
        super().__init__(f"{who} is using {path.parent}; stop it first")
        self.path = path
        self.pid = pid


def lock_path(data_dir: Path) -> Path:
    """Where the lock of a data directory lives."""
    return data_dir / LOCK_NAME


class InstanceLock:
    """An exclusive, non-blocking lock on a data directory; a context manager."""

    def __init__(self, data_dir: Path) -> None:
        self.path = lock_path(data_dir)
        self._fd: int | None = None

    def acquire(self, public_url: str | None = None) -> None:
        """Take the lock and write our pid (and public URL) into the file.

        ``InstanceRunning`` if another process holds it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            raise InstanceRunning(self.path, holder_pid(self.path))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{public_url or ''}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; the file stays (removing it would race with the next holder)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _lock_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def holder_pid(path: Path) -> int | None:
    """The pid written in a lock file, if any."""
    lines = _lock_lines(path)
    text = lines[0].strip() if lines else ""
    return int(text) if text.isdigit() else None


def running_public_url(data_dir: Path) -> str | None:
    """The public URL of the server running on ``data_dir``; None when none runs."""
    if running_pid(data_dir) is None:
        return None
    lines = _lock_lines(lock_path(data_dir))
    url = lines[1].strip() if len(lines) > 1 else ""
    return url or None


def running_pid(data_dir: Path) -> int | None:
    """The pid of the server using ``data_dir`` (0 when it is unknown), or None when none is."""
    path = lock_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, shared=True):
            return None
    finally:
        os.close(fd)  # closing drops a lock we took
    return holder_pid(path) or 0


def _try_lock(fd: int, *, shared: bool = False) -> bool:
    if sys.platform == "win32":  # no advisory locks there; documented as POSIX-only
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
