"""Google Home test fixtures: Google's schemas, a fake token endpoint and Home Graph on
127.0.0.1, a service account made for the run, and a user linked as Google links.

Google's side is a recording aiohttp server: ``/token`` checks the service account's JWT
(RS256 signature against the public key of the key generated here, grant type, audience,
issuer, scope, lifetime) and issues tokens; the two Home Graph paths check the bearer token
and answer as scripted. StateRelay runs whole, on a movable clock, and users link through
its real OAuth server with Google's redirect URI, so intents carry real access tokens.
"""

from __future__ import annotations

import asyncio
import base64
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jsonschema import Draft7Validator

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.core import Core
from staterelay.integrations.google import SINK_KEY
from staterelay.integrations.google.fulfillment import PATH
from staterelay.settings import GoogleSettings, OAuthClientSettings, OAuthSettings, Settings
from tests.alexa.conftest import Clock
from tests.conftest import SHARED
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_SECRET,
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

PROJECT = "sr-test-project"
GOOGLE_ID = "google-home"
GOOGLE_SECRET = "google-secret-0123456789abcdef"
GOOGLE_URIS = (
    f"https://oauth-redirect.googleusercontent.com/r/{PROJECT}",
    f"https://oauth-redirect-sandbox.googleusercontent.com/r/{PROJECT}",
)
GOOGLE_URI = GOOGLE_URIS[0]
SA_EMAIL = "staterelay@sr-test-project.iam.gserviceaccount.com"
HOMEGRAPH_SCOPE = "https://www.googleapis.com/auth/homegraph"
REPORT = "/v1/devices:reportStateAndNotification"
SYNC = "/v1/devices:requestSync"
JSON = dict[str, Any]

# OccupancySensing came after the 2022 schema snapshot: these follow Google's trait page
# (developers.home.google.com/cloud-to-cloud/traits/occupancysensing).
OCCUPANCY_ATTRIBUTES: JSON = {
    "type": "object",
    "properties": {
        "occupancySensorConfiguration": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "occupancySensorType": {"enum": ["PIR", "ULTRASONIC", "PHYSICAL_CONTACT"]},
                    "occupiedToUnoccupiedDelaySec": {"type": "integer", "minimum": 0},
                    "unoccupiedToOccupiedDelaySec": {"type": "integer", "minimum": 0},
                    "unoccupiedToOccupiedEventThreshold": {"type": "integer", "minimum": 0},
                },
                "required": ["occupancySensorType"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["occupancySensorConfiguration"],
    "additionalProperties": False,
}
OCCUPANCY_STATES: JSON = {
    "type": "object",
    "properties": {"occupancy": {"enum": ["OCCUPIED", "UNOCCUPIED"]}},
    "required": ["occupancy"],
    "additionalProperties": False,
}


def schema_dir() -> Path:
    """``$STATERELAY_GOOGLE_SCHEMAS`` or ``../shared/conformance/google``; skip when absent."""
    configured = os.environ.get("STATERELAY_GOOGLE_SCHEMAS")
    folder = Path(configured) if configured else SHARED / "conformance" / "google"
    if not (folder / "intents" / "sync" / "sync.response.schema.json").is_file():
        unavailable(f"Google's schemas are not at {folder} (set STATERELAY_GOOGLE_SCHEMAS)")
    return folder


def load_schema(relative: str) -> JSON:
    """One of Google's schema files."""
    data: JSON = json.loads((schema_dir() / relative).read_text(encoding="utf-8"))
    return data


@functools.lru_cache(maxsize=64)
def _validator(relative: str) -> Draft7Validator:
    schema = load_schema(relative)
    Draft7Validator.check_schema(schema)
    # No format checker: Google's own samples use requestIds that are not UUIDs.
    return Draft7Validator(schema)


def assert_valid(relative: str, instance: Any) -> None:
    """Validate ``instance`` against one of Google's schemas (draft-07)."""
    errors = list(_validator(relative).iter_errors(instance))
    assert not errors, f"{relative}: {errors[0].message[:300]}\n{json.dumps(instance)[:1500]}"


def _check(schema: JSON, instance: Any, what: str) -> None:
    errors = list(Draft7Validator(schema).iter_errors(instance))
    assert not errors, f"{what}: {errors[0].message[:300]}"


TRAIT_FILES = {
    "OnOff": "onoff/onoff",
    "Brightness": "brightness/brightness",
    "OpenClose": "openclose/openclose",
    "TemperatureControl": "temperaturecontrol/temperaturecontrol",
}
STATE_KEYS = {
    "OnOff": {"on"},
    "Brightness": {"brightness"},
    "OpenClose": {"openPercent"},
    "TemperatureControl": {"temperatureAmbientCelsius", "temperatureSetpointCelsius"},
    "OccupancySensing": {"occupancy"},
    "ObjectDetection": set(),
}


def assert_device_valid(entry: JSON) -> None:
    """A SYNC device's attributes against each trait's attributes schema."""
    attributes = entry.get("attributes", {})
    for trait in entry["traits"]:
        name = trait.removeprefix("action.devices.traits.")
        if name == "OccupancySensing":
            _check(OCCUPANCY_ATTRIBUTES, attributes, f"{entry['id']} OccupancySensing")
        elif name in TRAIT_FILES:
            assert_valid(f"traits/{TRAIT_FILES[name]}.attributes.schema.json", attributes)
        else:
            assert name == "ObjectDetection", name


def assert_states_valid(traits: list[str], states: JSON) -> None:
    """States (``online``, ``status`` and ``errorCode`` aside) against each trait's states
    schema, and nothing outside the declared traits (Home Graph refuses those)."""
    given = {k: v for k, v in states.items() if k not in ("online", "status", "errorCode")}
    allowed: set[str] = set()
    for trait in traits:
        name = trait.removeprefix("action.devices.traits.")
        allowed |= STATE_KEYS[name]
        mine = {k: v for k, v in given.items() if k in STATE_KEYS[name]}
        if name == "OccupancySensing":
            _check(OCCUPANCY_STATES, mine, "OccupancySensing states")
        elif name in TRAIT_FILES:
            assert_valid(f"traits/{TRAIT_FILES[name]}.states.schema.json", mine)
    assert set(given) <= allowed, f"states beyond the traits: {set(given) - allowed}"


# the service account ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    """The service account's key pair, made once for the run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_file(path: Path, private_key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    """Write a service account key file as Google's console hands it out."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": SA_EMAIL,
                "client_id": "1",
                "token_uri": token_uri,
            }
        ),
        encoding="utf-8",
    )
    return path


# the fake Google --------------------------------------------------------------------------------
@dataclass
class Call:
    """One request the fake got."""

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


Answer = tuple[int, JSON | None, dict[str, str]]


@dataclass
class FakeGoogle:
    """Google's token endpoint and Home Graph, recording and answering as scripted.

    ``script[path]`` holds answers used in order before the default 200; an answer with
    status 0 is a hang (longer than the sink waits). Every JWT is checked; a failing one
    is recorded in ``jwt_errors`` and refused with ``invalid_grant``.
    """

    public_key: rsa.RSAPublicKey
    server: TestServer | None = None
    calls: list[Call] = field(default_factory=list)
    script: dict[str, list[Answer]] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    jwt_errors: list[str] = field(default_factory=list)
    expires_in: int = 3600
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hang_seconds: float = 30.0

    def url(self, path: str = "") -> str:
        """An absolute URL on this server."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{path}"

    def of(self, path: str) -> list[Call]:
        """Requests to ``path``."""
        return [call for call in self.calls if call.path == path]

    def accepted(self, path: str = REPORT) -> list[JSON]:
        """Bodies Home Graph accepted at ``path``, in arrival order."""
        return [call.json() for call in self.of(path) if call.status == 200]

    async def wait(self, path: str, count: int, timeout: float = 10.0) -> list[Call]:
        """Wait until ``path`` got ``count`` requests (answered)."""
        deadline = time.monotonic() + timeout
        while len([c for c in self.of(path) if c.status is not None]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.of(path))} of {count} calls to {path} arrived")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)
        return self.of(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record, then answer as Google would."""
        call = Call(request.path, dict(request.headers), await request.read(), time.monotonic())
        self.calls.append(call)
        try:
            if request.path == "/token":
                return self._token(call)
            if request.path in (REPORT, SYNC):
                return await self._homegraph(call, request.path)
            call.status = 404
            return web.Response(status=404)
        finally:
            self.arrived.set()

    def _token(self, call: Call) -> web.Response:
        form = call.form()
        problem = self._jwt_problem(form)
        if problem is not None:
            self.jwt_errors.append(problem)
            call.status = 400
            return web.json_response(
                {"error": "invalid_grant", "error_description": problem}, status=400
            )
        token = f"ya29.fake-{len(self.issued) + 1}"
        self.issued.append(token)
        call.status = 200
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    def _jwt_problem(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return "bad grant_type"
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            return "not a JWT"
        header, claims = (json.loads(_unb64(part)) for part in parts[:2])
        try:
            self.public_key.verify(
                _unb64(parts[2]),
                f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return "bad signature"
        if header != {"alg": "RS256", "typ": "JWT", "kid": "k1"}:
            return f"bad header {header}"
        if claims.get("aud") != self.url("/token"):
            return f"bad aud {claims.get('aud')}"
        if claims.get("iss") != SA_EMAIL or claims.get("scope") != HOMEGRAPH_SCOPE:
            return "bad iss or scope"
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return "bad lifetime"
        return None

    async def _homegraph(self, call: Call, path: str) -> web.Response:
        if call.headers.get("Authorization", "").removeprefix("Bearer ") not in self.issued:
            call.status = 401
            return _google_error(401, "UNAUTHENTICATED")
        queue = self.script.get(path) or []
        status, body, headers = queue.pop(0) if queue else (200, None, {})
        if status == 0:
            call.status = 0  # answered by never answering: the caller gives up first
            await asyncio.sleep(self.hang_seconds)
            return web.json_response({"requestId": "late"})
        call.status = status
        if status == 200:
            return web.json_response(body if body is not None else {"requestId": "x"})
        return web.json_response(body or _error_body(status), status=status, headers=headers)


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error_body(status: int) -> JSON:
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": "scripted", "status": name}}


def _google_error(status: int, name: str) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": "scripted", "status": name}}, status=status
    )


def answer(status: int, headers: dict[str, str] | None = None) -> Answer:
    """A scripted Home Graph answer."""
    return (status, None, headers or {})


async def start_google(google: FakeGoogle, port: int = 0) -> FakeGoogle:
    """Serve ``google`` on 127.0.0.1."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", google.handle)
    google.server = TestServer(app, host="127.0.0.1", port=port or None)
    await google.server.start_server()
    return google


@pytest.fixture
async def google(private_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    """The fake Google on loopback."""
    fake = await start_google(FakeGoogle(private_key.public_key()))
    yield fake
    assert fake.server is not None
    await fake.server.close()


# StateRelay --------------------------------------------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    """A movable clock."""
    return Clock()


@pytest.fixture
def port() -> int:
    """StateRelay's port, known before the app is built."""
    return free_port()


def google_settings_for(
    settings: Settings,
    port: int,
    google: FakeGoogle,
    private_key: rsa.RSAPrivateKey,
    *,
    with_key: bool = True,
) -> Settings:
    """Settings with the Google (and Alexa) OAuth clients and Google on loopback."""
    key = key_file(settings.data_dir / "google-key.json", private_key, google.url("/token"))
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(
            settings.server, port=port, public_url=f"http://localhost:{port}"
        ),
        oauth=OAuthSettings(
            clients=(
                OAuthClientSettings(
                    id=GOOGLE_ID,
                    secret=GOOGLE_SECRET,
                    redirect_uris=GOOGLE_URIS,
                    token_endpoint_auth_method="client_secret_post",
                    scopes=("devices",),
                    name="Google Home",
                ),
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
        google=GoogleSettings(
            project_id=PROJECT,
            service_account_file=key.name if with_key else None,
            homegraph_url=google.url(),
        ),
    )


@pytest.fixture
def google_settings(
    settings: Settings, port: int, google: FakeGoogle, private_key: rsa.RSAPrivateKey
) -> Settings:
    """Settings for a fully configured Google Home integration."""
    return google_settings_for(settings, port, google, private_key)


@pytest.fixture
def google_app(google_settings: Settings, clock: Clock) -> web.Application:
    """The whole app on the movable clock."""
    return create_app(google_settings, clock=clock)


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], google_app: web.Application, port: int
) -> TestServer:
    """StateRelay on 127.0.0.1:<port>."""
    return await aiohttp_server(google_app, port=port)


@pytest.fixture
async def browser(aiohttp_client: Callable[..., Awaitable[Client]], server: TestServer) -> Client:
    """A client with a cookie jar (the user's browser, and Google)."""
    return await aiohttp_client(server)


@pytest.fixture
def core(google_app: web.Application, server: TestServer) -> Core:
    """The running app's core."""
    return google_app[CORE_KEY]


@pytest.fixture
async def user(core: Core) -> Any:
    """The household user who links Google Home."""
    return await core.users.create(email=EMAIL, password=PASSWORD)


def basic(user: str, password: str) -> str:
    """An HTTP Basic header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def google_code(browser: Client, redirect_uri: str = GOOGLE_URI) -> str:
    """Account linking's first half as Google does it: authorize, sign in, allow; the code."""
    path = authorize_path(GOOGLE_ID, redirect_uri, scope="devices", user_locale="en-US")
    await sign_in(browser, next_path=path)
    location = await consent(browser, path)
    assert location.startswith(redirect_uri + "?"), location
    params = redirect_params(location)
    assert params["state"] == "st-123"
    return params["code"]


async def link_google(browser: Client, *, basic_auth: bool = False) -> JSON:
    """The whole account link as Google does it; the token response."""
    code = await google_code(browser)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": GOOGLE_URI}
    headers = {}
    if basic_auth:
        headers["Authorization"] = basic(GOOGLE_ID, GOOGLE_SECRET)
    else:
        form |= {"client_id": GOOGLE_ID, "client_secret": GOOGLE_SECRET}
    answer = await browser.post("/oauth/token", data=form, headers=headers)
    assert answer.status == 200, await answer.text()
    tokens: JSON = await answer.json()
    return tokens


@pytest.fixture
async def tokens(browser: Client, user: Any) -> JSON:
    """The linked user's token response (access and refresh token)."""
    return await link_google(browser)


@pytest.fixture
async def token(tokens: JSON) -> str:
    """The linked user's access token, issued to Google Home's client."""
    access: str = tokens["access_token"]
    return access


async def intent(
    browser: Client, token: str | None, body: Any, *, raw: bytes | None = None
) -> tuple[int, JSON]:
    """POST an intent as Google does; the HTTP status and the JSON answer."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    response = await browser.post(PATH, data=data, headers=headers)
    answer: JSON = await response.json(content_type=None)
    return response.status, answer


def request(
    intent_name: str, payload: JSON | None = None, request_id: str = "6894439706274654512"
) -> JSON:
    """An intent request body."""
    entry: JSON = {"intent": f"action.devices.{intent_name}"}
    if payload is not None:
        entry["payload"] = payload
    return {"requestId": request_id, "inputs": [entry]}


async def synced(browser: Client, token: str) -> JSON:
    """Google's SYNC right after linking; the validated answer."""
    status, answer = await intent(browser, token, request("SYNC"))
    assert status == 200, answer
    assert_valid("intents/sync/sync.response.schema.json", answer)
    return answer


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.02)


async def settle(core: Core) -> None:
    """Let the dispatcher finish what is due, and the bus its handlers."""
    for _ in range(400):
        stats = await core.outbox.stats()
        if stats.pending == 0:
            break
        await asyncio.sleep(0.02)
    await core.bus.drain()


FastDispatcher = Callable[..., Awaitable[Any]]


@pytest.fixture
async def fast_dispatcher(google_app: web.Application, core: Core) -> AsyncIterator[FastDispatcher]:
    """Replace the app's dispatcher with one that retries within milliseconds."""
    from staterelay.core.events import OutboxEnqueued
    from staterelay.dispatch import Dispatcher, DispatcherConfig

    running: list[tuple[Any, Callable[[], None]]] = []

    async def start(**overrides: Any) -> Any:
        await google_app[DISPATCHER_KEY].stop()
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
            core, {"google": google_app[SINK_KEY]}, config=DispatcherConfig(**config)
        )
        unsubscribe = core.bus.subscribe(OutboxEnqueued, lambda _event: dispatcher.wake())
        await dispatcher.start()
        running.append((dispatcher, unsubscribe))
        return dispatcher

    yield start
    for dispatcher, unsubscribe in running:
        unsubscribe()
        await dispatcher.stop()
