"""Request rate limits on one process: per API credential, per client address, 429 answers
in each surface's own format, the uncounted paths, and 0 turning a limit off."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import LimitsSettings, Settings
from tests.conftest import make_account

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Any]


async def limited(aiohttp_client: MakeClient, settings: Settings, *, key: int, ip: int) -> Client:
    """A client of an app with these per-minute limits."""
    limits = LimitsSettings(api_key_per_minute=key, ip_per_minute=ip)
    app = create_app(dataclasses.replace(settings, limits=limits))
    client: Client = await aiohttp_client(app)
    return client


def from_ip(address: str) -> dict[str, str]:
    """Headers of a request the local proxy (trusted by default) forwarded from ``address``."""
    return {"X-Forwarded-For": address}


def assert_retry_after(headers: Any) -> int:
    """The Retry-After header: whole seconds within the one-minute window."""
    seconds = int(headers["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


async def test_an_api_key_over_its_limit_gets_a_problem_with_retry_after(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """The fourth request a minute with one key: 429 problem+json; another key still passes."""
    client = await limited(aiohttp_client, settings, key=3, ip=100)
    core = client.app[CORE_KEY]
    alice = await make_account(core, "alice@example.com")
    bob = await make_account(core, "bob@example.com")
    for _ in range(3):
        assert (await client.get("/api/v1/devices", headers=alice.headers)).status == 200
    refused = await client.get("/api/v1/devices", headers=alice.headers)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert_retry_after(refused.headers)
    body = await refused.json(content_type=None)
    assert body["status"] == 429
    assert body["code"] == "rate_limited"
    assert body["title"] == "Too many requests"
    assert "3 requests a minute with this credential" in body["detail"]
    assert (await client.get("/api/v1/devices", headers=bob.headers)).status == 200


async def test_a_credential_counts_before_it_is_checked(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Guessing tokens is limited too: an unknown bearer counts like a real one."""
    client = await limited(aiohttp_client, settings, key=2, ip=100)
    guess = {"Authorization": "Bearer sr_not_a_real_key"}
    assert [(await client.get("/api/v1/devices", headers=guess)).status for _ in range(3)] == [
        401,
        401,
        429,
    ]


async def test_an_address_over_its_limit_gets_the_error_page(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Dashboard pages count per client address (as the trusted proxy names it)."""
    client = await limited(aiohttp_client, settings, key=100, ip=3)
    first = await client.get("/login", headers=from_ip("198.51.100.7"), allow_redirects=False)
    assert first.status != 429
    for _ in range(2):
        response = await client.get("/login", headers=from_ip("198.51.100.7"))
        assert response.status == first.status
    refused = await client.get("/login", headers=from_ip("198.51.100.7"))
    assert refused.status == 429
    assert refused.content_type == "text/html"
    assert_retry_after(refused.headers)
    page = await refused.text()
    assert "Too many requests" in page
    assert "3 requests a minute from this address" in page
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in refused.headers
    other = await client.get("/login", headers=from_ip("198.51.100.8"))
    assert other.status == first.status


async def test_the_oauth_token_endpoint_answers_an_oauth_error(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Clients of /oauth/token read OAuth errors: JSON with ``error``, never an HTML page."""
    client = await limited(aiohttp_client, settings, key=100, ip=2)
    form = {"grant_type": "authorization_code", "code": "nope"}
    for _ in range(2):
        assert (await client.post("/oauth/token", data=form)).status != 429
    refused = await client.post("/oauth/token", data=form)
    assert refused.status == 429
    assert refused.content_type == "application/json"
    assert refused.headers["Cache-Control"] == "no-store"
    assert_retry_after(refused.headers)
    body = await refused.json()
    assert body["error"] == "temporarily_unavailable"
    assert "2 requests a minute from this address" in body["error_description"]


async def test_the_api_counts_per_address_as_well(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Many keys from one address still meet the address's limit, as problem+json."""
    client = await limited(aiohttp_client, settings, key=100, ip=2)
    statuses = []
    for n in range(3):
        headers = {"Authorization": f"Bearer sr_guess_{n}"}
        statuses.append((await client.get("/api/v1/devices", headers=headers)).status)
    assert statuses == [401, 401, 429]


async def test_alexa_ifttt_and_operations_are_not_counted(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Amazon and IFTTT call from shared addresses; health checks and assets are free."""
    client = await limited(aiohttp_client, settings, key=1, ip=1)
    directive = json.dumps({"directive": {}})
    for _ in range(5):
        assert (await client.post("/alexa/smart_home", data=directive)).status != 429
        assert (await client.get("/ifttt/v1/status")).status != 429
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/static/app.css")).status != 429
    # The address's one request of the minute is still unused.
    assert (await client.get("/login")).status != 429
    assert (await client.get("/login")).status == 429


async def test_zero_turns_each_limit_off(aiohttp_client: MakeClient, settings: Settings) -> None:
    """With both limits at 0 one key from one address is never refused."""
    client = await limited(aiohttp_client, settings, key=0, ip=0)
    account = await make_account(client.app[CORE_KEY], "alice@example.com")
    for _ in range(40):
        assert (await client.get("/api/v1/devices", headers=account.headers)).status == 200
        assert (await client.get("/login")).status != 429


async def test_the_default_limits_leave_ordinary_use_alone(
    client: Client, settings: Settings
) -> None:
    """Defaults: 600 a minute per key, 1200 per address."""
    assert settings.limits == LimitsSettings(api_key_per_minute=600, ip_per_minute=1200)
    for _ in range(30):
        assert (await client.get("/login")).status != 429
