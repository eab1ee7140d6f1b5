"""Rate limits and sign-in throttling shared through Redis by two app instances, and the
in-process fallback when Redis does not answer."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.core.errors import NotAuthenticated
from staterelay.core.throttle import LoginThrottle, LoginThrottled
from staterelay.replicas.link import RedisLink
from staterelay.replicas.throttle import RedisLoginThrottle
from staterelay.settings import LimitsSettings, RedisSettings, Settings
from tests.conftest import make_account
from tests.processes import free_port
from tests.web.support import FakeClock

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Any]

ADDRESS = "198.51.100.23"


def replica_settings(
    settings: Settings, url: str, prefix: str, *, key: int = 100, ip: int = 100
) -> Settings:
    """``settings`` with Redis, small limits and two sign-in failures allowed."""
    return dataclasses.replace(
        settings,
        redis=RedisSettings(url=url, key_prefix=prefix),
        limits=LimitsSettings(api_key_per_minute=key, ip_per_minute=ip),
        accounts=dataclasses.replace(settings.accounts, login_max_failures=2),
    )


async def two_replicas(aiohttp_client: MakeClient, settings: Settings) -> tuple[Client, Client]:
    """Two running apps on one database and one Redis prefix, as two replicas would be."""
    first: Client = await aiohttp_client(create_app(settings))
    second: Client = await aiohttp_client(create_app(settings))
    return first, second


async def fail_sign_in(core: Core, email: str, ip: str = ADDRESS) -> None:
    """One wrong password."""
    with pytest.raises(NotAuthenticated):
        await core.accounts.login(email=email, password="not the password", ip=ip)


async def keys_under(url: str, prefix: str) -> list[str]:
    """Every key under ``prefix``."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}:*")]
    finally:
        await client.aclose()


async def test_an_api_key_limit_counts_on_every_replica(
    aiohttp_client: MakeClient, settings: Settings, redis_url: str, key_prefix: str
) -> None:
    """Two requests on one replica and one on the other use up a limit of three."""
    shared = replica_settings(settings, redis_url, key_prefix, key=3)
    first, second = await two_replicas(aiohttp_client, shared)
    account = await make_account(first.app[CORE_KEY], "alice@example.com")
    for _ in range(2):
        assert (await first.get("/api/v1/devices", headers=account.headers)).status == 200
    assert (await second.get("/api/v1/devices", headers=account.headers)).status == 200
    refused = await second.get("/api/v1/devices", headers=account.headers)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await first.get("/api/v1/devices", headers=account.headers)).status == 429
    keys = await keys_under(redis_url, key_prefix)
    assert keys, "the counts live in Redis"
    assert not any(account.key in key or ADDRESS in key or "127.0.0.1" in key for key in keys)
    assert all(key.startswith(f"{key_prefix}:rl:") for key in keys)


async def test_an_address_limit_counts_on_every_replica(
    aiohttp_client: MakeClient, settings: Settings, redis_url: str, key_prefix: str
) -> None:
    """Pages from one address: the second replica refuses once the first used the limit."""
    shared = replica_settings(settings, redis_url, key_prefix, ip=2)
    first, second = await two_replicas(aiohttp_client, shared)
    forwarded = {"X-Forwarded-For": ADDRESS}
    assert (await first.get("/login", headers=forwarded)).status != 429
    assert (await first.get("/login", headers=forwarded)).status != 429
    refused = await second.get("/login", headers=forwarded)
    assert refused.status == 429
    assert refused.content_type == "text/html"
    assert "Retry-After" in refused.headers


async def test_sign_in_failures_lock_the_account_on_every_replica(
    aiohttp_client: MakeClient, settings: Settings, redis_url: str, key_prefix: str
) -> None:
    """Failures on one replica lock the account on the other; a success there clears it."""
    shared = replica_settings(settings, redis_url, key_prefix)
    first, second = await two_replicas(aiohttp_client, shared)
    one, two = first.app[CORE_KEY], second.app[CORE_KEY]
    await fail_sign_in(one, "eve@example.com")
    await fail_sign_in(two, "Eve@Example.com ", ip="203.0.113.5")
    with pytest.raises(LoginThrottled) as locked:
        await two.accounts.login(email="eve@example.com", password="x", ip="203.0.113.6")
    assert 1 <= locked.value.retry_after <= 2
    with pytest.raises(LoginThrottled):
        await one.accounts.login(email="eve@example.com", password="x", ip="203.0.113.7")
    # Another account from a fresh address is not affected.
    await fail_sign_in(one, "sam@example.com", ip="203.0.113.8")
    keys = await keys_under(redis_url, key_prefix)
    assert keys
    assert not any("example.com" in key or "203.0.113" in key for key in keys)


async def test_the_shared_throttle_follows_the_in_process_rules(
    redis_url: str, key_prefix: str
) -> None:
    """The same growing delays, address factor and forgetting as ``LoginThrottle``."""
    clock = FakeClock()
    link = RedisLink(redis_url, key_prefix=key_prefix)
    shared = RedisLoginThrottle(link, clock, max_failures=2, max_delay=60.0)
    local = LoginThrottle(clock, max_failures=2, max_delay=60.0)
    try:
        for attempt in range(10):
            for throttle in (shared, local):
                await throttle.arecord_failure("acct", f"ip{attempt % 3}")
            waits = []
            for throttle in (shared, local):
                try:
                    await throttle.acheck("acct", "elsewhere")
                    waits.append(0)
                except LoginThrottled as error:
                    waits.append(error.retry_after)
            assert waits[0] == waits[1], attempt
        assert waits[0] == 60
        for throttle in (shared, local):
            for n in range(8):
                await throttle.arecord_failure(f"spray{n}", "spray-ip")
        with pytest.raises(LoginThrottled):
            await shared.acheck("new-account", "spray-ip")
        await shared.arecord_success("acct")
        await shared.acheck("acct", "elsewhere")
        clock.advance(86400)
        await shared.acheck("new-account", "spray-ip")  # forgotten after a day
    finally:
        await link.close()


async def test_without_redis_each_replica_counts_alone(
    aiohttp_client: MakeClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable: requests are served, limits and throttling hold in process."""
    caplog.set_level(logging.WARNING, logger="staterelay.replicas")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(replica_settings(settings, closed, "nowhere", key=3, ip=100))
    client: Client = await aiohttp_client(app)
    core = app[CORE_KEY]
    account = await make_account(core, "alice@example.com")
    statuses = [
        (await client.get("/api/v1/devices", headers=account.headers)).status for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    await fail_sign_in(core, "eve@example.com")
    await fail_sign_in(core, "eve@example.com")
    with pytest.raises(LoginThrottled):
        await core.accounts.login(email="eve@example.com", password="x", ip=ADDRESS)
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
    assert (await client.get("/readyz")).status == 200
