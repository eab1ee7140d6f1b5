"""Redis for tests: the shared server on 127.0.0.1:6379, or a redis-server of the test's own.

Tests that need Redis skip, saying why, where none answers or no ``redis-server`` binary is
installed; with ``CI=true`` (``.ci/run``) they fail instead, since CI has both.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from functools import cache

from tests.processes import free_port
from tests.skips import unavailable as skip_or_fail

HOST, PORT = "127.0.0.1", 6379
SHARED_URL = f"redis://{HOST}:{PORT}/0"
NO_SERVER = f"no Redis server answers on {HOST}:{PORT}"
NO_BINARY = "no redis-server binary on PATH to start a Redis of the test's own"


def unavailable(reason: str) -> None:
    """Skip the calling test with ``reason``; on CI fail it, as the service must be there."""
    skip_or_fail(reason)


@cache
def redis_available() -> bool:
    """True when the shared Redis answers PING."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> str:
    """The shared Redis's URL; skips (fails on CI) when it does not answer."""
    if not redis_available():
        unavailable(NO_SERVER)
    return SHARED_URL


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"srtest-{uuid.uuid4().hex[:12]}"


async def delete_prefixed(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (a test's leftovers)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
    finally:
        await client.aclose()


class RedisServerProcess:
    """``redis-server`` on a free loopback port, without persistence; can be killed and
    started again on the same port."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            unavailable(NO_BINARY)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://{HOST}:{self.port}/0"

    async def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it answers PING."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}")
            if self._answers():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("redis-server did not answer")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: Redis is gone at once, as on a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def ensure_stopped(self) -> None:
        """Kill it if it still runs."""
        self.kill()
