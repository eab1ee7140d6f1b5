"""JSON nested 1,100 deep, sent to every route that takes a body: never a 500 (issue 15).

The router is walked, sub-applications included, so a route added later is covered without
touching this file. Each request carries credentials that get it past authentication, so
the body reaches the parser; the answer must be the surface's own error format, and nothing
may be logged at ERROR.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from staterelay.api.openapi import build_document
from staterelay.app.http import OutgoingHttp
from staterelay.core import Core
from staterelay.core.alexa import MessagingClient
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.integrations.alexa.lwa import LoginWithAmazon, LwaError
from staterelay.integrations.alexa.views import SECRET_HEADER
from staterelay.settings import AlexaSettings, IftttSettings, Settings
from tests.conftest import Account, link_oauth_client
from tests.ifttt.conftest import SERVICE_KEY, link

Client = TestClient[web.Request, web.Application]

DEPTH = 1100
DEEP = b"[" * DEPTH + b"]" * DEPTH
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The IFTTT endpoints that read a JSON body (the others ignore it).
IFTTT_BODY_READERS = re.compile(
    r"/ifttt/v1/(actions|triggers)/\{slug\}(/validate|/fields/validate|/fields/\{field\}/validate)?"
)


def body_routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route that may take a body, sub-apps included.

    A sub-application's resources already carry its prefix in their canonical path.
    """
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            yield from body_routes(resource.get_info()["app"])
            continue
        for route in resource:
            if route.method in BODY_METHODS:
                yield route.method, resource.canonical


def api_operations_with_bodies() -> set[tuple[str, str]]:
    """(method, path template) of the API operations whose OpenAPI entry has a requestBody."""
    document = build_document()
    found: set[tuple[str, str]] = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                found.add((method.upper(), "/api/v1" + path))
    return found


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """IFTTT on, so its routes authenticate IFTTT; the relay secret is the instance's own."""
    return dataclasses.replace(settings, ifttt=IftttSettings(service_key=SERVICE_KEY))


@pytest.fixture
async def ids(core: Core, settings: Settings) -> dict[str, str]:
    """Real objects for every path parameter, and the credentials each surface needs."""
    linked = await link(core, "deep@example.com")
    device = await core.devices.create(linked.principal, type="switch", name="Deep", source="api")
    person = await core.auth.authenticate(linked.api_key)
    hook, _ = await core.webhooks.create(
        person, {"url": "http://127.0.0.1:9/hook", "event_types": ["device.deleted"]}
    )
    google_client = "google-deep"
    await core.oauth.create_client(
        client_id=google_client,
        name="Google Home",
        redirect_uris=["https://oauth-redirect.googleusercontent.com/r/deep-project"],
        token_endpoint_auth_method="client_secret_post",
        scopes=["devices"],
    )
    account = Account(person.user_id, person.tenant_id, linked.api_key, "deep@example.com")
    _, google_token = await link_oauth_client(core, account, client_id=google_client)
    return {
        "device_id": device.id,
        "webhook_id": hook.id,
        "api_key": linked.api_key,
        "ifttt_token": linked.token,
        "google_token": google_token,
        "relay_secret": relay_secret(load_or_create_secret(settings.secret_key_path)),
    }


def concrete(template: str, ids: dict[str, str]) -> str:
    """The template with each ``{name}`` (or ``{name:regex}``) replaced by a real id."""
    return re.sub(
        r"\{(\w+)(?::[^}]*)?\}", lambda match: ids.get(match.group(1), "unknown_x"), template
    )


def headers_for(path: str, ids: dict[str, str]) -> dict[str, str]:
    """The credential a real caller of this surface sends."""
    headers = {"Content-Type": "application/json"}
    if path.startswith("/ifttt/"):
        headers["IFTTT-Service-Key"] = SERVICE_KEY
        headers["Authorization"] = f"Bearer {ids['ifttt_token']}"
    elif path.startswith(("/api/", "/dashboard/ws")):
        headers["Authorization"] = f"Bearer {ids['api_key']}"
    elif path.startswith("/alexa/"):
        headers[SECRET_HEADER] = ids["relay_secret"]
    elif path.startswith("/google/"):
        headers["Authorization"] = f"Bearer {ids['google_token']}"
    return headers


async def test_every_body_route_answers_deep_json_in_its_own_format(
    client: Client, ids: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """No 5xx, no traceback, the surface's error format; parsed bodies say how deep is too deep."""
    routes = sorted(set(body_routes(client.app)))
    assert ("POST", "/alexa/smart_home") in routes
    assert ("POST", "/api/v1/devices") in routes
    assert any(path.startswith("/ifttt/v1/actions/") for _, path in routes)
    parsed_by_api = api_operations_with_bodies()
    caplog.set_level(logging.INFO)
    checked: list[str] = []
    for method, template in routes:
        path = concrete(template, ids)
        response = await client.request(method, path, data=DEEP, headers=headers_for(path, ids))
        text = await response.text()
        where = f"{method} {template}: {response.status} {text[:300]}"
        assert response.status < 500, where
        assert "Traceback" not in text, where
        kind = response.content_type
        if path.startswith("/api/"):
            if response.status >= 400:
                assert kind == "application/problem+json", where
            if (method, template) in parsed_by_api:
                assert response.status == 400, where
                assert "nests deeper than 32 levels" in (await response.json())["detail"], where
        elif path == "/alexa/smart_home":
            assert response.status == 400, where
            header = (await response.json())["event"]["header"]
            payload = (await response.json())["event"]["payload"]
            assert header["name"] == "ErrorResponse", where
            assert payload["type"] == "INVALID_DIRECTIVE", where
            assert "nests deeper" in payload["message"], where
        elif path == "/google/fulfillment":
            assert response.status == 200, where
            payload = (await response.json())["payload"]
            assert payload["errorCode"] == "protocolError", where
            assert "nests deeper" in payload["debugString"], where
        elif path.startswith("/ifttt/"):
            if response.status >= 400:
                assert kind == "application/json", where
                assert (await response.json())["errors"][0]["message"], where
            if IFTTT_BODY_READERS.fullmatch(template):
                assert response.status == 400, where
                assert "nests deeper" in (await response.json())["errors"][0]["message"], where
        elif path in ("/oauth/token", "/oauth/revoke"):
            assert response.status in (400, 401), where
            assert kind == "application/json", where
            assert (await response.json())["error"], where
        else:
            assert kind == "text/html", where
        checked.append(where)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert len(checked) == len(routes)


async def test_a_live_socket_ignores_deep_json_and_keeps_answering(
    client: Client, ids: dict[str, str]
) -> None:
    """WebSocket messages are not parsed as JSON; a deep one changes nothing."""
    headers = {"Authorization": f"Bearer {ids['api_key']}"}
    async with client.ws_connect("/dashboard/ws", headers=headers) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        await ws.send_str(DEEP.decode())
        await ws.send_str("ping")
        message = await ws.receive(timeout=5)
        assert message.type == WSMsgType.TEXT
        assert message.json() == {"type": "pong"}


def test_the_walk_finds_routes_of_every_surface(app: web.Application) -> None:
    """The walker sees the API sub-application, the IFTTT and Alexa routes and the UI forms."""
    routes = set(body_routes(app))
    prefixes = {path.split("/")[1] for _, path in routes}
    assert {"api", "alexa", "ifttt", "oauth", "dashboard"} <= prefixes


async def test_a_deep_answer_from_login_with_amazon_is_no_token_answer(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    """Answers from outside are measured too: Login with Amazon answering 200 with JSON
    nested 1,100 deep is a bad answer (an ``LwaError``), not a RecursionError."""

    async def deep(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_post("/auth/o2/token", deep)
    server = await aiohttp_server(app)
    http = OutgoingHttp()
    messaging = MessagingClient("amzn1.application-oa2-client.x", "messaging-secret")

    async def credentials() -> MessagingClient:
        return messaging

    lwa = LoginWithAmazon(
        http.shared,
        AlexaSettings(lwa_token_url=str(server.make_url("/auth/o2/token"))),
        credentials,
    )
    try:
        with pytest.raises(LwaError) as refused:
            await lwa.exchange_code("grant-code")
    finally:
        await http.close()
    assert refused.value.code == "bad_answer"
