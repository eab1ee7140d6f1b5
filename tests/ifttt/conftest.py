"""IFTTT fixtures: a configured app, a recording Realtime server, linked users, the OpenAPI file.

The Realtime receiver is a real aiohttp server on 127.0.0.1 that records what it gets;
``ifttt.realtime_url`` points at it. Users link the way IFTTT links them: an access token
of the ``ifttt`` preset client, issued through the OAuth service's code exchange.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.core.oauth import NewCode
from staterelay.core.oauth_clients import ifttt_preset
from staterelay.core.records import Device, Principal
from staterelay.settings import IftttSettings, Settings
from tests.conftest import SHARED, make_account
from tests.skips import unavailable

Client = TestClient[web.Request, web.Application]

SERVICE_KEY = "svc_0123456789abcdefghijklmnopqrstuv"
V1 = "/ifttt/v1"
DEBOUNCE = 0.05


class MovableClock:
    """Real time plus an offset; ``freeze`` stops it until ``thaw``."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: float | None = None

    def __call__(self) -> float:
        return self.frozen if self.frozen is not None else time.time() + self.offset

    def freeze(self, at: float) -> None:
        """Stand still at ``at``."""
        self.frozen = at

    def advance(self, seconds: float) -> None:
        """Move forward (frozen or not)."""
        if self.frozen is not None:
            self.frozen += seconds
        else:
            self.offset += seconds


@dataclass
class Notification:
    """One request the Realtime receiver got."""

    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Realtime:
    """IFTTT's Realtime API, recorded; ``script`` statuses are answered first, then 200."""

    server: TestServer | None = None
    received: list[Notification] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The receiver's notifications URL."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/v1/notifications"

    def identities(self) -> list[str]:
        """Every trigger identity notified so far, in order, repeats included."""
        return [
            entry["trigger_identity"]
            for note in self.received
            if isinstance(note.body, dict)
            for entry in note.body.get("data", [])
            if "trigger_identity" in entry
        ]

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request and answer as scripted."""
        body = await request.json() if request.can_read_body else None
        self.received.append(Notification(dict(request.headers), body, time.monotonic()))
        status = self.script.pop(0) if self.script else 200
        return web.json_response({"data": []} if status < 300 else {}, status=status)


def realtime_app(recorder: Realtime) -> web.Application:
    """An app that records POSTs to /v1/notifications."""
    app = web.Application()
    app.router.add_post("/v1/notifications", recorder.handle)
    return app


@pytest.fixture
async def realtime(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Realtime:
    """A running Realtime receiver on 127.0.0.1."""
    recorder = Realtime()
    recorder.server = await aiohttp_server(realtime_app(recorder))
    return recorder


def ifttt_settings(base: Settings, realtime_url: str, **overrides: Any) -> Settings:
    """``base`` with IFTTT configured: service key, Realtime URL, a short debounce."""
    values: dict[str, Any] = {
        "service_key": SERVICE_KEY,
        "realtime_url": realtime_url,
        "realtime_debounce_seconds": DEBOUNCE,
        **overrides,
    }
    return dataclasses.replace(base, ifttt=IftttSettings(**values))


@pytest.fixture
def clock() -> MovableClock:
    """The app's clock: real time unless a test moves or freezes it."""
    return MovableClock()


@pytest.fixture
def settings(settings: Settings, realtime: Realtime) -> Settings:
    """The root settings with IFTTT configured against the recording receiver."""
    return ifttt_settings(settings, realtime.url)


@pytest.fixture
def app(settings: Settings, clock: MovableClock) -> web.Application:
    """The whole application with the movable clock."""
    return create_app(settings, clock=clock)


@dataclass
class Linked:
    """A user who linked IFTTT: their principal and IFTTT's access token for them."""

    principal: Principal
    token: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        """What IFTTT sends on user endpoints."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def api_headers(self) -> dict[str, str]:
        """The person's own API key, for managing the account (webhooks, keys)."""
        return {"Authorization": f"Bearer {self.api_key}"}


async def ifttt_client_id(core: Core) -> str:
    """The id of the ``ifttt`` preset client (registered on first use)."""
    for client in await core.oauth.list_clients():
        if "ifttt" in client.scopes:
            return client.id
    preset = ifttt_preset("staterelay")
    client, _ = await core.oauth.create_client(
        name=preset.name,
        redirect_uris=preset.redirect_uris,
        token_endpoint_auth_method=preset.token_endpoint_auth_method,
        scopes=preset.scopes,
        client_id="ifttt-test",
    )
    return client.id


async def link(core: Core, email: str, *, new_tenant: bool = False) -> Linked:
    """A user with an access token of the ``ifttt`` client, as after IFTTT's OAuth flow."""
    account = await make_account(core, email, new_tenant=new_tenant)
    client_id = await ifttt_client_id(core)
    client = await core.oauth.get_client(client_id)
    assert client is not None
    code = core.oauth.new_code()
    record = await core.oauth.save_code(
        code,
        NewCode(
            client_id=client.id,
            tenant_id=account.tenant_id,
            user_id=account.user_id,
            redirect_uri=client.redirect_uris[0],
            redirect_uri_given=True,
            scopes=client.scopes,
        ),
    )
    tokens = core.oauth.issue_tokens(client.scopes)
    assert await core.oauth.exchange_code(record, tokens)
    principal = await core.auth.authenticate(tokens.access_token)
    return Linked(principal=principal, token=tokens.access_token, api_key=account.key)


@pytest.fixture
async def alice(core: Core) -> Linked:
    """A household user linked to IFTTT."""
    return await link(core, "alice@example.com")


@pytest.fixture
async def mallory(core: Core) -> Linked:
    """A user of another household, linked to IFTTT."""
    return await link(core, "mallory@example.net", new_tenant=True)


DeviceFactory = Callable[..., Awaitable[Device]]


@pytest.fixture
def make_device(core: Core, alice: Linked) -> DeviceFactory:
    """Create a device of alice's household."""

    async def make(type: str = "switch", name: str = "Desk lamp", **extra: Any) -> Device:
        return await core.devices.create(
            alice.principal, type=type, name=name, source="api", **extra
        )

    return make


async def set_state(core: Core, who: Linked, device: Device, **values: Any) -> Device:
    """Change a device as the API would."""
    return await core.devices.set_state(who.principal, device.id, values, source="api")


async def poll(
    client: Client, who: Linked, slug: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, Any]:
    """POST a trigger check; (status, JSON)."""
    response = await client.post(
        f"{V1}/triggers/{slug}", json=body or {}, headers={**who.headers, **headers}
    )
    return response.status, await response.json()


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` (sync or async) until it is truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# IFTTT's OpenAPI file ---------------------------------------------------------------------------


def conformance_dir() -> Path:
    """Where the shared conformance data is: ``STATERELAY_CONFORMANCE_DIR`` or ../shared."""
    configured = os.environ.get("STATERELAY_CONFORMANCE_DIR")
    return Path(configured) if configured else SHARED / "conformance"


@pytest.fixture(scope="session")
def service_api() -> dict[str, Any]:
    """IFTTT's ``service-api.yaml`` (skips, with the reason, when it is not available)."""
    path = conformance_dir() / "ifttt" / "service-api.yaml"
    if not path.is_file():
        unavailable(f"IFTTT's service-api.yaml is not at {path} (set STATERELAY_CONFORMANCE_DIR)")
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    # The file types ingredient and field values as "object" while its own descriptions and
    # IFTTT's documentation say strings (or a Location): accept any value there.
    schemas = document["components"]["schemas"]
    schemas["TriggerEvent"]["additionalProperties"] = {}
    schemas["StepFields"]["additionalProperties"] = {}
    return document


SchemaCheck = Callable[[str, Any], None]


@pytest.fixture(scope="session")
def conforms(service_api: dict[str, Any]) -> SchemaCheck:
    """Assert that a value matches a component schema of IFTTT's OpenAPI file."""
    uri = "urn:ifttt:service-api"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(service_api, default_specification=DRAFT7)
    )

    def check(name: str, instance: Any) -> None:
        validator = Draft7Validator(
            {"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)

    return check
