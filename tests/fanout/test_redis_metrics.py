"""``/metrics`` of a replica with Redis: connected, publish failures and reconnects, as Redis
goes away and comes back (a redis-server of the test's own, killed and restarted)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import RedisSettings, Settings
from tests.conftest import make_account
from tests.redis_support import RedisServerProcess, unique_prefix


async def scrape(client: TestClient[Any, Any]) -> dict[str, float]:
    """The unlabelled samples of /metrics, by name."""
    text = await (await client.get("/metrics")).text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            samples[name] = float(value)
    return samples


async def eventually(
    client: TestClient[Any, Any], check: Callable[[dict[str, float]], bool], timeout: float = 8.0
) -> dict[str, float]:
    """Scrape until ``check`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(client)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, samples
        await asyncio.sleep(0.1)


async def test_redis_health_follows_the_server(
    settings: Settings,
    own_redis: RedisServerProcess,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    redis = RedisSettings(url=own_redis.url, key_prefix=unique_prefix())
    app = create_app(dataclasses.replace(settings, redis=redis))
    client = await aiohttp_client(app)
    account = await make_account(app[CORE_KEY], "metrics@example.com")
    created = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Lamp"}, headers=account.headers
    )
    device = (await created.json())["id"]

    samples = await eventually(client, lambda s: s["redis_connected"] == 1)
    assert samples["redis_reconnects_total"] == 0
    assert samples["redis_publish_failures_total"] == 0

    own_redis.kill()
    for power in ("ON", "OFF", "ON"):
        await client.put(
            f"/api/v1/devices/{device}/state", json={"power": power}, headers=account.headers
        )
    samples = await eventually(
        client, lambda s: s["redis_connected"] == 0 and s["redis_publish_failures_total"] >= 1
    )
    assert samples["redis_reconnects_total"] == 0

    await own_redis.start()
    samples = await eventually(
        client, lambda s: s["redis_connected"] == 1 and s["redis_reconnects_total"] == 1
    )


async def test_without_redis_there_are_no_redis_families(
    client: TestClient[Any, Any],
) -> None:
    samples = await scrape(client)
    assert not any(name.startswith("redis_") for name in samples)
