"""Helpers for tests that run ``staterelay`` as a real process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a CLI command against a data dir; returns stdout (raises on failure)."""
    result = subprocess.run(
        [sys.executable, "-m", "staterelay", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"staterelay {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


class ServerProcess:
    """``staterelay serve`` in a subprocess on a free port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that runs this server."""
        return [
            sys.executable,
            "-m",
            "staterelay",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]

    async def start(self, timeout: float = 20.0) -> None:
        """Start and wait until /readyz answers 200."""
        self.proc = subprocess.Popen(
            self.command(), env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float) -> None:
        """Poll /readyz until it answers 200; fail with the exit report if the process ends."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.exit_report()}")
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("server did not become ready")

    def exit_report(self) -> str:
        """What the process said before it exited."""
        return self.stderr()

    def stderr(self) -> str:
        """What the process wrote to stderr (after it exited)."""
        if self.proc is None or self.proc.stderr is None:
            return ""
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """kill -9."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def ensure_stopped(self) -> None:
        """Kill the process if it is still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


def tcp_socket_owner(local_port: int, remote_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP socket ``local_port`` -> ``remote_port``.

    Linux only (reads ``/proc``). A receiver in the test calls it with a request's peer
    port and its own port to learn which server process sent the request. None when no
    such socket is open in any of ``pids`` (the process closed it or has died).
    """
    inode = _tcp_inode(local_port, remote_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(fd_dir / name) == target:
                    return pid
            except OSError:
                continue
    return None


def _tcp_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the TCP socket with these ports, from ``/proc/net/tcp{,6}``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (
                inode
                and int(local.rsplit(":", 1)[1], 16) == local_port
                and int(remote.rsplit(":", 1)[1], 16) == remote_port
            ):
                return inode
    return None


class LoggedServerProcess(ServerProcess):
    """``staterelay serve`` whose stderr goes to a file, for long runs that log a lot.

    A pipe nobody reads fills up and stalls the server; a file does not.
    """

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env)
        self.log_path = log_path

    async def start(self, timeout: float = 20.0) -> None:
        """Start with stderr appended to ``log_path`` and wait until /readyz answers 200."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=subprocess.DEVNULL, stderr=log
            )
        await self.wait_ready(timeout)

    def exit_report(self) -> str:
        """The end of the log file."""
        return self.log_text()[-2000:]

    def log_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid
