"""The live feed: bus events to the tenant's sockets, Origin and credential checks, limits."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import Settings
from staterelay.ui import LIVE_KEY
from tests.ui.homes import Browse, Home, sign_in_home

ORIGIN = "http://localhost:8080"  # the default public URL's origin
WS = "/dashboard/ws"


@pytest.fixture
def app(settings: Settings) -> web.Application:
    """The app on the real clock (the store stamps outbox rows with the database's time)."""
    return create_app(settings)


@pytest.fixture
async def home(app: web.Application, browse: Browse) -> Home:
    """The household's admin, signed in."""
    return await sign_in_home(browse, app, "sam@example.com")


async def open_feed(home: Home, **headers: str) -> aiohttp.ClientWebSocketResponse:
    """The feed as the dashboard page opens it (the session cookie and our Origin)."""
    ws = await home.browser.client.ws_connect(WS, headers={"Origin": ORIGIN, **headers})
    hello = await ws.receive_json(timeout=2)
    assert hello["type"] == "hello"
    return ws


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> Any:
    """The next JSON message (fails on a close or a timeout)."""
    message = await ws.receive(timeout=timeout)
    assert message.type == WSMsgType.TEXT, message
    return json.loads(message.data)


async def api_key(home: Home, scope: str = "write") -> str:
    """An API key of the signed-in person."""
    _, secret = await home.core.auth.create_key_for(home.principal, name="script", scope=scope)
    return secret


async def test_a_change_through_the_api_reaches_the_open_page_at_once(home: Home) -> None:
    """The bus, not the request, feeds the socket: the API's change arrives with its row."""
    device_id = await home.add_device("switch", "Lamp")
    ws = await open_feed(home)
    key = await api_key(home)
    started = time.monotonic()
    response = await home.browser.client.put(
        f"/api/v1/devices/{device_id}/state",
        json={"power": "ON"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status == 200
    message = await next_message(ws, timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert message["type"] == "device.state"
    assert message["device"]["id"] == device_id
    assert message["device"]["state"] == {"power": "ON"}
    assert message["device"]["state_text"] == "On"
    assert [(a["text"], a["source"]) for a in message["activity"]] == [("Turned on", "api")]
    await ws.close()


async def test_sockets_hear_only_their_own_household(app: web.Application, browse: Browse) -> None:
    """Tenant B's socket never receives tenant A's events, and the other way round."""
    a = await sign_in_home(browse, app, "sam@example.com")
    b = await sign_in_home(browse, app, "eve@example.net", own_tenant=True)
    a_lamp = await a.add_device("switch", "A lamp")
    b_lamp = await b.add_device("switch", "B lamp")
    a_ws = await open_feed(a)
    b_ws = await open_feed(b)
    hub = app[LIVE_KEY]
    assert (hub.connections(a.user.tenant_id), hub.connections(b.user.tenant_id)) == (1, 1)
    await a.post(f"/dashboard/devices/{a_lamp}/state", {"power": "ON"})
    await a.add_device("button", "A bell")
    assert (await next_message(a_ws))["device"]["name"] == "A lamp"
    assert (await next_message(a_ws))["type"] == "device.added"
    await b.post(f"/dashboard/devices/{b_lamp}/state", {"power": "ON"})
    first_for_b = await next_message(b_ws)
    assert first_for_b["device"]["id"] == b_lamp
    with pytest.raises(asyncio.TimeoutError):
        await a_ws.receive(timeout=0.3)
    await a_ws.close()
    await b_ws.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://localhost:8081"}, 403),
        ({}, 403),  # a cookie without an Origin is not a page of ours
    ],
)
async def test_cross_site_sockets_are_refused(
    home: Home, headers: dict[str, str], status: int
) -> None:
    """Cross-site WebSocket hijacking: the browser's cookie alone opens nothing."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await home.browser.client.ws_connect(WS, headers=headers)
    assert refused.value.status == status


async def test_scripts_connect_with_a_bearer_token(app: web.Application, home: Home) -> None:
    """No cookie: an Authorization header or a token parameter; wrong or none is 401."""
    key = await api_key(home, scope="read")
    fresh = aiohttp.ClientSession()
    server = home.browser.client.server
    try:
        url = server.make_url(WS)
        ws = await fresh.ws_connect(url, headers={"Authorization": f"Bearer {key}"})
        assert (await ws.receive_json(timeout=2))["type"] == "hello"
        await ws.close()
        ws = await fresh.ws_connect(url.with_query(token=key))
        assert (await ws.receive_json(timeout=2))["type"] == "hello"
        await ws.close()
        for headers, status in (
            ({"Authorization": "Bearer sr_not-a-key"}, 401),
            ({}, 401),
            ({"Authorization": f"Bearer {key}", "Origin": "https://evil.example"}, 403),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await fresh.ws_connect(url, headers=headers)
            assert refused.value.status == status
        plain = await fresh.get(url, headers={"Authorization": f"Bearer {key}"})
        assert plain.status == 400
    finally:
        await fresh.close()


async def test_delivery_results_are_pushed_when_they_are_recorded(
    home: Home, aiohttp_server: Any
) -> None:
    """Results are announced without rows once they are on disk; the hub reads the new ones
    and sends them (the device's creation was delivered too: its result may come along)."""

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    server = await aiohttp_server(receiver)
    await home.core.webhooks.create(
        home.principal,
        {"url": f"http://127.0.0.1:{server.port}/hook", "description": "Home Assistant"},
    )
    device_id = await home.add_device("contact_sensor", "Front door")
    ws = await open_feed(home)
    await home.post(f"/dashboard/devices/{device_id}/state", {"detection": "DETECTED"})
    state = await next_message(ws)
    assert state["activity"][0]["text"] == "Opened"
    delivered = await next_message(ws, timeout=5)
    assert delivered["type"] == "activity"
    row = delivered["activity"][0]  # newest first
    assert (row["text"], row["tone"], row["kind"]) == (
        "Webhook “Home Assistant” answered 204",
        "ok",
        "delivery",
    )
    assert row["id"] > state["activity"][0]["id"]
    assert all(entry["kind"] == "delivery" for entry in delivered["activity"])
    await ws.close()


async def test_a_slow_client_is_closed_so_it_resyncs(app: web.Application, home: Home) -> None:
    """A full send queue closes the socket (1013) instead of growing without bound."""
    hub = app[LIVE_KEY]
    hub.queue_size = 3
    ws = await open_feed(home)
    for n in range(10):  # faster than any socket drains: nothing yields in between
        hub.send(home.user.tenant_id, {"type": "test", "n": n})
    codes = []
    while True:
        message = await ws.receive(timeout=2)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            codes.append(ws.close_code)
            break
    assert codes == [WSCloseCode.TRY_AGAIN_LATER]
    await asyncio.sleep(0.05)
    assert hub.connections() == 0


async def test_signing_out_closes_the_socket(app: web.Application, home: Home) -> None:
    """The session is checked again while the socket is open; once it ends, so does the feed."""
    app[LIVE_KEY].recheck = 0.05
    ws = await open_feed(home)
    response = await home.post("/logout")
    assert response.status == 303
    message = await ws.receive(timeout=2)
    assert message.type == WSMsgType.CLOSE
    assert ws.close_code == WSCloseCode.POLICY_VIOLATION


async def test_big_messages_close_the_socket_and_pings_are_answered(home: Home) -> None:
    """The page only sends ``ping``; anything over 4 KiB is refused (1009)."""
    ws = await open_feed(home)
    await ws.send_str("ping")
    assert await next_message(ws) == {"type": "pong"}
    await ws.send_str("x" * 5000)
    message = await ws.receive(timeout=2)
    assert message.type == WSMsgType.CLOSE
    assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG


async def test_stopping_the_server_closes_sockets_with_going_away(settings: Settings) -> None:
    """Shutdown closes every socket with 1001 before the app is torn down."""
    app = create_app(settings)
    server = TestServer(app)
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        core = app[CORE_KEY]
        user = await core.users.create(email="sam@example.com")
        _, key = await core.auth.create_api_key(user, name="script", scope="read")
        ws = await session.ws_connect(
            server.make_url(WS), headers={"Authorization": f"Bearer {key}"}
        )
        assert (await ws.receive_json(timeout=2))["type"] == "hello"
        closing = asyncio.ensure_future(server.close())
        message = await ws.receive(timeout=5)
        assert message.type == WSMsgType.CLOSE
        assert ws.close_code == WSCloseCode.GOING_AWAY
        await closing
    finally:
        await session.close()
        await server.close()
