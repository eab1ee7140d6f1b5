"""Alexa test fixtures: Amazon's schema, recording LWA and gateway servers, a linked user.

Amazon's side runs as recording aiohttp servers on 127.0.0.1; StateRelay runs whole, with
a movable clock. Users link through StateRelay's real OAuth server, as Alexa does, so
directives carry real OAuth access tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from jsonschema import Draft4Validator

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.core import Core
from staterelay.core.records import Principal
from staterelay.integrations.alexa.views import PATH, SECRET_HEADER
from staterelay.settings import AlexaSettings, OAuthClientSettings, OAuthSettings, Settings
from tests.conftest import SHARED
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_SECRET,
    ALEXA_URI,
    ALEXA_URIS,
    EMAIL,
    PASSWORD,
    Client,
    authorize_path,
    consent,
    redirect_params,
    sign_in,
)
from tests.processes import free_port
from tests.skips import unavailable

RELAY_SECRET = "relay-secret-for-tests-0123456789"
MESSAGING_ID = "amzn1.application-oa2-client.staterelaytest"
MESSAGING_SECRET = "messaging-secret-for-tests"
GRANT_CODE = "ANUbUKCJqlBOpMhwYWxU"  # the code in Amazon's AcceptGrant sample
JSON = dict[str, Any]


def conformance_dir() -> Path:
    """``$STATERELAY_CONFORMANCE_DIR`` or ``../shared/conformance``; skip when absent."""
    configured = os.environ.get("STATERELAY_CONFORMANCE_DIR")
    folder = Path(configured) if configured else SHARED / "conformance"
    if not (folder / "alexa" / "alexa_smart_home_message_schema.json").is_file():
        unavailable(
            f"Amazon's Alexa schema is not at {folder}/alexa (set STATERELAY_CONFORMANCE_DIR)"
        )
    return folder


@functools.lru_cache(maxsize=1)
def _validator(path: str) -> Draft4Validator:
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def assert_valid(message: Any) -> None:
    """Validate a message StateRelay sent against Amazon's draft-04 schema."""
    path = conformance_dir() / "alexa" / "alexa_smart_home_message_schema.json"
    errors = list(_validator(str(path)).iter_errors(message))
    assert not errors, f"{json.dumps(message)[:2000]}\nschema: {errors[0].message[:500]}"


def sample(relative: str) -> JSON:
    """One of Amazon's sample messages."""
    text = (conformance_dir() / "alexa" / "samples" / relative).read_text(encoding="utf-8")
    data: JSON = json.loads(text)
    return data


class Clock:
    """The app's clock: starts at the real time, stands still and is moved by hand, or,
    after ``run()``, also moves with real time (for retries that wait)."""

    def __init__(self) -> None:
        self._base = time.time()
        self._since: float | None = None

    @property
    def now(self) -> float:
        """The current time."""
        if self._since is None:
            return self._base
        return self._base + time.monotonic() - self._since

    @now.setter
    def now(self, value: float) -> None:
        self._base = value
        if self._since is not None:
            self._since = time.monotonic()

    def run(self) -> None:
        """Let time pass from now on."""
        self._since = time.monotonic()

    def __call__(self) -> float:
        return self.now


@dataclass
class Call:
    """One request a recording server got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None

    def json(self) -> JSON:
        """The body as JSON."""
        data: JSON = json.loads(self.body)
        return data

    def form(self) -> dict[str, str]:
        """The body as a form."""
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode()))


@dataclass
class Amazon:
    """Login with Amazon and the Alexa event gateway, recording and answering as scripted.

    ``gateway_script`` holds (status, code or None, headers) answers used in order before
    ``gateway_default``; ``refresh_error`` makes refresh-token requests fail with it.
    """

    server: TestServer | None = None
    calls: list[Call] = field(default_factory=list)
    gateway_script: list[tuple[int, str | None, dict[str, str]]] = field(default_factory=list)
    gateway_default: int = 202
    issued: int = 0
    refresh_token: str | None = None
    refresh_error: str | None = None
    expires_in: int = 3600
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None
    """When set to an unset event, the gateway answers only once it is set."""
    lwa_hold: asyncio.Event | None = None
    """The same for Login with Amazon's refresh answers."""

    def url(self, path: str) -> str:
        """An absolute URL on this server."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{path}"

    @property
    def lwa_calls(self) -> list[Call]:
        """Token requests."""
        return [c for c in self.calls if c.path == "/auth/o2/token"]

    @property
    def events(self) -> list[Call]:
        """Requests to the event gateway."""
        return [c for c in self.calls if c.path == "/v3/events"]

    def accepted(self) -> list[JSON]:
        """Events the gateway accepted, in arrival order."""
        return [c.json() for c in self.events if c.status == 202]

    async def wait_events(self, count: int, timeout: float = 5.0) -> list[Call]:
        """Wait until the gateway got ``count`` requests."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.events)} of {count} events arrived")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)
        return self.events

    def issue(self) -> web.Response:
        """A new token pair."""
        self.issued += 1
        self.refresh_token = f"Atzr|refresh-{self.issued}"
        return web.json_response(
            {
                "access_token": f"Atza|access-{self.issued}",
                "refresh_token": self.refresh_token,
                "token_type": "bearer",
                "expires_in": self.expires_in,
            }
        )

    @property
    def access_token(self) -> str:
        """The access token issued last."""
        return f"Atza|access-{self.issued}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record, then answer as LWA or the gateway would."""
        call = Call(request.path, dict(request.headers), await request.read(), time.monotonic())
        self.calls.append(call)
        self.arrived.set()
        if request.path == "/auth/o2/token":
            form = call.form()
            if form.get("client_id") != MESSAGING_ID or form.get("client_secret") != (
                MESSAGING_SECRET
            ):
                return web.json_response({"error": "invalid_client"}, status=401)
            if form.get("grant_type") == "authorization_code" and form.get("code") == GRANT_CODE:
                return self.issue()
            if form.get("grant_type") == "refresh_token":
                if self.lwa_hold is not None:
                    await self.lwa_hold.wait()
                if self.refresh_error:
                    return web.json_response({"error": self.refresh_error}, status=400)
                if form.get("refresh_token") == self.refresh_token:
                    return self.issue()
            return web.json_response({"error": "invalid_grant"}, status=400)
        if request.path == "/v3/events":
            if self.hold is not None:
                await self.hold.wait()
            status, code, headers = (
                self.gateway_script.pop(0)
                if self.gateway_script
                else (self.gateway_default, None, {})
            )
            call.status = status
            if status == 202:
                return web.Response(status=202)
            body = {"header": {"messageId": "x"}, "payload": {"code": code, "description": "test"}}
            return web.json_response(body, status=status, headers=headers)
        return web.Response(status=404)


async def start_amazon(amazon: Amazon, port: int = 0) -> Amazon:
    """Serve ``amazon`` on 127.0.0.1 (on ``port`` when given, to come back after a stop)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", amazon.handle)
    amazon.server = TestServer(app, host="127.0.0.1", port=port or None)
    await amazon.server.start_server()
    return amazon


@pytest.fixture
async def amazon() -> AsyncIterator[Amazon]:
    """Recording LWA and gateway on loopback."""
    recorder = await start_amazon(Amazon())
    yield recorder
    assert recorder.server is not None
    await recorder.server.close()


@pytest.fixture
def clock() -> Clock:
    """A movable clock."""
    return Clock()


@pytest.fixture
def port() -> int:
    """StateRelay's port, known before the app is built."""
    return free_port()


def alexa_settings_for(settings: Settings, port: int, amazon: Amazon, **alexa: Any) -> Settings:
    """Settings with public_url on ``port``, the Alexa OAuth client and Amazon on loopback."""
    values: dict[str, Any] = {
        "relay_secret": RELAY_SECRET,
        "messaging_client_id": MESSAGING_ID,
        "messaging_client_secret": MESSAGING_SECRET,
        "region": "NA",
        "lwa_token_url": amazon.url("/auth/o2/token"),
        "event_gateway_url": amazon.url("/v3/events"),
        **alexa,
    }
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(
            settings.server, port=port, public_url=f"http://localhost:{port}"
        ),
        oauth=OAuthSettings(
            clients=(
                OAuthClientSettings(
                    id=ALEXA_ID,
                    secret=ALEXA_SECRET,
                    redirect_uris=ALEXA_URIS,
                    token_endpoint_auth_method="client_secret_basic",
                    scopes=("devices",),
                    name="Amazon Alexa",
                ),
            )
        ),
        alexa=AlexaSettings(**values),
    )


@pytest.fixture
def alexa_settings(settings: Settings, port: int, amazon: Amazon) -> Settings:
    """Settings for a fully configured Alexa skill."""
    return alexa_settings_for(settings, port, amazon)


@pytest.fixture
def alexa_app(alexa_settings: Settings, clock: Clock) -> web.Application:
    """The whole app on the movable clock."""
    return create_app(alexa_settings, clock=clock)


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], alexa_app: web.Application, port: int
) -> TestServer:
    """StateRelay on 127.0.0.1:<port>."""
    return await aiohttp_server(alexa_app, port=port)


@pytest.fixture
async def browser(aiohttp_client: Callable[..., Awaitable[Client]], server: TestServer) -> Client:
    """A client with a cookie jar (the user's browser, and Alexa's relay)."""
    return await aiohttp_client(server)


@pytest.fixture
def core(alexa_app: web.Application, server: TestServer) -> Core:
    """The running app's core."""
    return alexa_app[CORE_KEY]


@pytest.fixture
async def user(core: Core) -> Any:
    """The household user who links Alexa."""
    return await core.users.create(email=EMAIL, password=PASSWORD)


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def link_account(browser: Client) -> str:
    """Account linking as Alexa does it: sign in, consent, code for tokens; the access token."""
    await sign_in(browser, next_path=authorize_path())
    location = await consent(browser, authorize_path(scope="devices"))
    code = redirect_params(location)["code"]
    answer = await browser.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": ALEXA_URI},
        headers={"Authorization": "Basic " + _basic(ALEXA_ID, ALEXA_SECRET)},
    )
    assert answer.status == 200, await answer.text()
    token: str = (await answer.json())["access_token"]
    return token


@pytest.fixture
async def token(browser: Client, user: Any) -> str:
    """An OAuth access token of the user, issued to the Alexa client."""
    return await link_account(browser)


@pytest.fixture
async def principal(core: Core, token: str) -> Principal:
    """The linked user's principal."""
    return await core.auth.authenticate(token)


async def send(
    browser: Client, body: Any, *, secret: str | None = RELAY_SECRET, raw: bytes | None = None
) -> tuple[int, JSON]:
    """POST a directive as the relay does; returns the HTTP status and JSON answer."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    data = raw if raw is not None else json.dumps(body).encode()
    response = await browser.post(PATH, data=data, headers=headers)
    answer: JSON = await response.json(content_type=None)
    return response.status, answer


def directive(
    namespace: str,
    name: str,
    token: str,
    endpoint_id: str | None = None,
    payload: JSON | None = None,
    correlation: str | None = "dFMb0z+PgpgdDmluhJ1LddFvSqZ/jCc8ptlAKulUj90jSqg==",
) -> JSON:
    """A v3 directive like Alexa sends."""
    head: JSON = {
        "namespace": namespace,
        "name": name,
        "payloadVersion": "3",
        "messageId": "1bd5d003-31b9-476f-ad03-71d471922820",
    }
    if correlation is not None:
        head["correlationToken"] = correlation
    body: JSON = {"header": head, "payload": dict(payload or {})}
    if endpoint_id is not None:
        body["endpoint"] = {
            "scope": {"type": "BearerToken", "token": token},
            "endpointId": endpoint_id,
            "cookie": {},
        }
    elif namespace == "Alexa.Discovery":
        body["payload"]["scope"] = {"type": "BearerToken", "token": token}
    return {"directive": body}


def accept_grant(token: str, code: str = GRANT_CODE) -> JSON:
    """AcceptGrant as Alexa sends it after linking."""
    return {
        "directive": {
            "header": {
                "namespace": "Alexa.Authorization",
                "name": "AcceptGrant",
                "payloadVersion": "3",
                "messageId": "1bd5d003-31b9-476f-ad03-71d471922820",
            },
            "payload": {
                "grant": {"type": "OAuth2.AuthorizationCode", "code": code},
                "grantee": {"type": "BearerToken", "token": token},
            },
        }
    }


@pytest.fixture
async def granted(browser: Client, token: str, amazon: Amazon) -> str:
    """The user linked and AcceptGrant done; returns the OAuth token."""
    status, answer = await send(browser, accept_grant(token))
    assert status == 200
    assert answer["event"]["header"]["name"] == "AcceptGrant.Response", answer
    return token


FastDispatcher = Callable[..., Awaitable[Any]]


@pytest.fixture
async def fast_dispatcher(alexa_app: web.Application, core: Core) -> AsyncIterator[FastDispatcher]:
    """Replace the app's dispatcher with one that retries within milliseconds."""
    from staterelay.core.events import OutboxEnqueued
    from staterelay.dispatch import Dispatcher, DispatcherConfig
    from staterelay.integrations.alexa import ALEXA_KEY

    running: list[tuple[Dispatcher, Callable[[], None]]] = []

    async def start(**overrides: Any) -> Dispatcher:
        await alexa_app[DISPATCHER_KEY].stop()
        config: dict[str, Any] = {
            "owner": f"fast-{len(running)}",
            "retry_base_seconds": 0.05,
            "retry_factor": 1.0,
            "retry_cap_seconds": 0.05,
            "poll_seconds": 0.1,
            "trip_seconds": 0.0,
            **overrides,
        }
        dispatcher = Dispatcher(
            core, {"alexa": alexa_app[ALEXA_KEY].sink}, config=DispatcherConfig(**config)
        )
        unsubscribe = core.bus.subscribe(OutboxEnqueued, lambda _event: dispatcher.wake())
        await dispatcher.start()
        running.append((dispatcher, unsubscribe))
        return dispatcher

    yield start
    for dispatcher, unsubscribe in running:
        unsubscribe()
        await dispatcher.stop()
