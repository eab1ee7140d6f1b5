"""Caps on open live feeds: per sign-in (session, API key, OAuth token) and per household.

Beyond a cap the upgrade is refused with 429, the reason and ``Retry-After``; the refusal
is counted on ``/metrics``; closing a socket frees its place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.settings import LimitsSettings, Settings
from tests.conftest import make_account
from tests.ui.homes import Browse, Home, sign_in_home

ORIGIN = "http://localhost:8080"
WS = "/dashboard/ws"
PER_CREDENTIAL = 3
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
PER_HOUSEHOLD = 5


@pytest.fixture
def app(settings: Settings) -> web.Application:
    """Small caps, so the tests reach them with a handful of sockets."""
    limits = LimitsSettings(
        websockets_per_credential=PER_CREDENTIAL, websockets_per_household=PER_HOUSEHOLD
    )
    return create_app(dataclasses.replace(settings, limits=limits))


@pytest.fixture
async def home(app: web.Application, browse: Browse) -> Home:
    """The household's admin, signed in."""
    return await sign_in_home(browse, app, "sam@example.com")


@pytest.fixture
async def sockets() -> AsyncIterator[list[aiohttp.ClientWebSocketResponse]]:
    """Sockets a test opened; closed afterwards."""
    opened: list[aiohttp.ClientWebSocketResponse] = []
    yield opened
    for ws in opened:
        await ws.close()


async def key_of(core: Core, home: Home) -> str:
    """A new API key of the signed-in person."""
    _, secret = await core.auth.create_key_for(home.principal, name="feed", scope="read")
    return secret


async def open_with(
    home: Home, sockets: list[aiohttp.ClientWebSocketResponse], headers: dict[str, str]
) -> None:
    """Open one more feed (it must be accepted)."""
    ws = await home.browser.client.ws_connect(WS, headers=headers)
    assert (await ws.receive_json(timeout=2))["type"] == "hello"
    sockets.append(ws)


async def refused(home: Home, headers: dict[str, str]) -> tuple[int, str, str | None]:
    """Try one more; (status, reason, Retry-After) of the refusal."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await home.browser.client.ws_connect(WS, headers=headers)
    assert caught.value.status == 429
    # The same upgrade by hand, to read the refusal's body and headers.
    response = await home.browser.client.get(WS, headers={**headers, **UPGRADE})
    body = await response.json()
    return response.status, body["error"], response.headers.get("Retry-After")


async def refusals(home: Home, cap: str) -> float:
    """``live_connections_refused_total{cap=...}`` as /metrics shows it."""
    text = await (await home.browser.client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(f'live_connections_refused_total{{cap="{cap}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no live_connections_refused_total for {cap}:\n{text}")


async def test_one_api_key_gets_its_cap_then_429_until_one_closes(
    home: Home, sockets: list[aiohttp.ClientWebSocketResponse]
) -> None:
    key = {"Authorization": f"Bearer {await key_of(home.core, home)}"}
    assert await refusals(home, "credential") == 0
    for _ in range(PER_CREDENTIAL):
        await open_with(home, sockets, key)
    status, reason, retry_after = await refused(home, key)
    assert status == 429
    assert f"already has {PER_CREDENTIAL} live feeds open" in reason
    assert retry_after == "30"
    assert await refusals(home, "credential") == 2  # the handshake and the plain GET
    # Another credential of the same household still gets in.
    await open_with(home, sockets, {"Authorization": f"Bearer {await key_of(home.core, home)}"})
    # Closing one of the first key's sockets frees its place.
    await sockets.pop(0).close()
    await open_with(home, sockets, key)


async def test_a_session_is_a_credential_of_its_own(
    home: Home, sockets: list[aiohttp.ClientWebSocketResponse]
) -> None:
    """Browser tabs of one sign-in share a cap; an API key of the same person does not."""
    page = {"Origin": ORIGIN}
    for _ in range(PER_CREDENTIAL):
        await open_with(home, sockets, page)
    status, reason, _ = await refused(home, page)
    assert status == 429
    assert "close one (another tab or device)" in reason
    await open_with(home, sockets, {"Authorization": f"Bearer {await key_of(home.core, home)}"})


async def test_the_household_cap_counts_every_credential_and_spares_other_households(
    app: web.Application, home: Home, sockets: list[aiohttp.ClientWebSocketResponse]
) -> None:
    keys = [{"Authorization": f"Bearer {await key_of(home.core, home)}"} for _ in range(3)]
    for headers in (keys[0], keys[0], keys[0], keys[1], keys[1]):
        await open_with(home, sockets, headers)
    status, reason, _ = await refused(home, keys[2])
    assert status == 429
    assert f"Your household already has {PER_HOUSEHOLD} live feeds open" in reason
    assert await refusals(home, "household") == 2
    neighbour = await make_account(app[CORE_KEY], "neighbour@example.net", new_tenant=True)
    await open_with(home, sockets, neighbour.headers)
