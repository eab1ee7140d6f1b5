"""Fixtures of the Redis tests: the shared server with a key prefix of the test's own, and
redis-servers the tests start, kill and restart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.redis_support import RedisServerProcess, delete_prefixed, require_redis, unique_prefix


@pytest.fixture
def redis_url() -> str:
    """The shared Redis (skips, or fails on CI, when it does not answer)."""
    return require_redis()


@pytest.fixture
async def key_prefix(redis_url: str) -> AsyncIterator[str]:
    """A fresh key prefix on the shared Redis; its keys are removed afterwards."""
    prefix = unique_prefix()
    yield prefix
    await delete_prefixed(redis_url, prefix)


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServerProcess]:
    """A running redis-server of this test's own on a free port."""
    server = RedisServerProcess()
    try:
        await server.start()
        yield server
    finally:
        server.ensure_stopped()
