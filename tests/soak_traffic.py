"""Mixed traffic for soak runs against a ``staterelay serve`` process.

Used by ``tests/test_soak.py`` (a short run in CI) and ``bench/soak.py`` (longer, with
figures). ``prepare`` writes the instance's config and credentials before the server starts;
``Upstreams`` plays every outside service on loopback (a webhook receiver, Login with
Amazon and the Alexa event gateway, IFTTT Realtime); ``drive`` sends API reads and writes,
Alexa directives, IFTTT trigger polls and actions, and dashboard live-feed connects and
disconnects from a few concurrent workers until a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.assemble import build_core
from staterelay.core.crypto import load_or_create_secret
from staterelay.settings import load_settings
from tests.conftest import link_oauth_client, make_account

RELAY_SECRET = "soak-relay-secret-0123456789abcdef"
SERVICE_KEY = "soak-service-key-0123456789abcdef"
MESSAGING_ID = "amzn1.application-oa2-client.soak"
MESSAGING_SECRET = "soak-messaging-secret"
RELAY_HEADER = "X-StateRelay-Relay-Secret"
DEVICES = 4
SOAK_ENV = {
    # Rate limits would answer 429 to a soak; it measures leaks, not limits.
    "STATERELAY_LIMITS_API_KEY_PER_MINUTE": "0",
    "STATERELAY_LIMITS_IP_PER_MINUTE": "0",
}


@dataclass
class Upstreams:
    """Every outside service on one loopback server, counting what it gets."""

    server: TestServer | None = None
    hits: Counter[str] = field(default_factory=Counter)
    issued: int = 0

    @property
    def base(self) -> str:
        """The server's base URL."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        """Serve on 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            await self.server.close()

    async def handle(self, request: web.Request) -> web.Response:
        """Answer as the service at this path would."""
        await request.read()
        self.hits[request.path] += 1
        if request.path == "/auth/o2/token":
            self.issued += 1
            return web.json_response(
                {
                    "access_token": f"Atza|soak-access-{self.issued}",
                    "refresh_token": f"Atzr|soak-refresh-{self.issued}",
                    "token_type": "bearer",
                    "expires_in": 3600,
                }
            )
        if request.path == "/v3/events":
            return web.Response(status=202)
        if request.path == "/v1/notifications":
            return web.json_response({"data": []})
        return web.Response(status=204)  # /hook


@dataclass(frozen=True)
class Credentials:
    """What the traffic authenticates with."""

    api_key: str
    alexa_token: str
    ifttt_token: str


def write_config(data_dir: Path, upstreams: Upstreams) -> None:
    """Point Alexa, IFTTT and webhooks at the loopback upstreams."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = {
        "alexa": {
            "relay_secret": RELAY_SECRET,
            "messaging_client_id": MESSAGING_ID,
            "messaging_client_secret": MESSAGING_SECRET,
            "lwa_token_url": f"{upstreams.base}/auth/o2/token",
            "event_gateway_url": f"{upstreams.base}/v3/events",
        },
        "ifttt": {"service_key": SERVICE_KEY, "realtime_url": f"{upstreams.base}/v1/notifications"},
        "webhooks": {"allow_private_networks": True},
    }
    (data_dir / "config.yaml").write_text(json.dumps(config), encoding="utf-8")


async def prepare(data_dir: Path, upstreams: Upstreams) -> Credentials:
    """Config, a user with an API key, Alexa's and IFTTT's OAuth tokens, and a webhook."""
    write_config(data_dir, upstreams)
    settings = load_settings(data_dir / "config.yaml", data_dir=data_dir, environ={})
    core = build_core(settings, instance_secret=load_or_create_secret(settings.secret_key_path))
    await core.store.open()
    try:
        account = await make_account(core, "soak@example.com")
        _, alexa_token = await link_oauth_client(core, account, client_id="alexa-soak")
        ifttt_client, _ = await core.oauth.create_client(
            client_id="ifttt-soak",
            name="IFTTT soak",
            redirect_uris=["https://ifttt.com/channels/soak/authorize"],
            token_endpoint_auth_method="client_secret_post",
            scopes=["ifttt"],
        )
        ifttt_token = await _issue(core, account, ifttt_client.id, ("ifttt",))
        person = await core.auth.authenticate(account.key)
        await core.webhooks.create(person, {"url": f"{upstreams.base}/hook"})
        return Credentials(api_key=account.key, alexa_token=alexa_token, ifttt_token=ifttt_token)
    finally:
        await core.bus.close()
        await core.store.close()


async def _issue(core: Any, account: Any, client_id: str, scopes: tuple[str, ...]) -> str:
    from staterelay.core.oauth import NewCode

    code = core.oauth.new_code()
    record = await core.oauth.save_code(
        code,
        NewCode(
            client_id=client_id,
            tenant_id=account.tenant_id,
            user_id=account.user_id,
            redirect_uri="https://ifttt.com/channels/soak/authorize",
            redirect_uri_given=True,
            scopes=scopes,
        ),
    )
    tokens = core.oauth.issue_tokens(scopes)
    assert await core.oauth.exchange_code(record, tokens)
    return str(tokens.access_token)


@dataclass
class Tally:
    """Answers by surface and status, and the 5xx ones in detail."""

    requests: int = 0
    by_surface: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    def note(self, surface: str, status: int, what: str) -> None:
        """Count one answer."""
        self.requests += 1
        self.by_surface[surface] += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors.append(f"{what} -> {status}")


class Traffic:
    """The mixed load on one server."""

    def __init__(self, base_url: str, credentials: Credentials) -> None:
        self.base = base_url
        self.credentials = credentials
        self.devices: list[str] = []
        self.tally = Tally()

    def _api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.api_key}"}

    def _ifttt(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.credentials.ifttt_token}",
            "IFTTT-Service-Key": SERVICE_KEY,
            "X-Request-ID": f"soak-{uuid.uuid4().hex}",
        }

    async def setup(self, http: aiohttp.ClientSession) -> None:
        """Link Alexa (AcceptGrant) and create the devices the traffic works on."""
        answer = await self._directive(
            http,
            {
                "header": _header("Alexa.Authorization", "AcceptGrant"),
                "payload": {
                    "grant": {"type": "OAuth2.AuthorizationCode", "code": "soak-code"},
                    "grantee": {"type": "BearerToken", "token": self.credentials.alexa_token},
                },
            },
        )
        assert answer["event"]["header"]["name"] == "AcceptGrant.Response", answer
        for n in range(DEVICES):
            kind = "dimmer" if n % 2 else "switch"
            async with http.post(
                f"{self.base}/api/v1/devices",
                json={"type": kind, "name": f"Soak {n}"},
                headers=self._api(),
            ) as response:
                assert response.status == 201, await response.text()
                self.devices.append((await response.json())["id"])

    async def drive(self, seconds: float, workers: int = 6) -> Tally:
        """Send mixed traffic from ``workers`` tasks for ``seconds``; close every connection."""
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(self._worker(http, n, deadline) for n in range(workers)))
        return self.tally

    async def _worker(self, http: aiohttp.ClientSession, seed: int, deadline: float) -> None:
        chance = random.Random(seed)
        steps = (
            self._api_read,
            self._api_write,
            self._alexa_directive,
            self._alexa_report_state,
            self._ifttt_poll,
            self._ifttt_action,
            self._live_feed,
        )
        while time.monotonic() < deadline:
            step = chance.choice(steps)
            await step(http, chance)

    async def _call(
        self, http: aiohttp.ClientSession, surface: str, method: str, path: str, **kwargs: Any
    ) -> Any:
        async with http.request(method, f"{self.base}{path}", **kwargs) as response:
            body = await response.read()
            self.tally.note(surface, response.status, f"{method} {path}")
            return json.loads(body) if body and response.content_type.endswith("json") else None

    async def _api_read(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        if chance.random() < 0.5:
            await self._call(http, "api", "GET", "/api/v1/devices", headers=self._api())
        else:
            device = chance.choice(self.devices)
            await self._call(http, "api", "GET", f"/api/v1/devices/{device}", headers=self._api())

    async def _api_write(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        device = chance.choice(self.devices)
        body = {"power": chance.choice(("ON", "OFF"))}
        await self._call(
            http, "api", "PUT", f"/api/v1/devices/{device}/state", json=body, headers=self._api()
        )

    async def _directive(self, http: aiohttp.ClientSession, directive: dict[str, Any]) -> Any:
        return await self._call(
            http,
            "alexa",
            "POST",
            "/alexa/smart_home",
            data=json.dumps({"directive": directive}),
            headers={"Content-Type": "application/json", RELAY_HEADER: RELAY_SECRET},
        )

    def _endpoint(self, device: str) -> dict[str, Any]:
        scope = {"type": "BearerToken", "token": self.credentials.alexa_token}
        return {"scope": scope, "endpointId": device, "cookie": {}}

    async def _alexa_directive(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        device = chance.choice(self.devices)
        name = chance.choice(("TurnOn", "TurnOff"))
        await self._directive(
            http,
            {
                "header": _header("Alexa.PowerController", name, correlation=True),
                "endpoint": self._endpoint(device),
                "payload": {},
            },
        )

    async def _alexa_report_state(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        device = chance.choice(self.devices)
        await self._directive(
            http,
            {
                "header": _header("Alexa", "ReportState", correlation=True),
                "endpoint": self._endpoint(device),
                "payload": {},
            },
        )

    async def _ifttt_poll(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        device = chance.choice(self.devices)
        body = {
            "triggerFields": {"device": device},
            "trigger_identity": f"soak-{device}",
            "limit": 10,
        }
        await self._call(
            http,
            "ifttt",
            "POST",
            "/ifttt/v1/triggers/power_changed",
            json=body,
            headers=self._ifttt(),
        )

    async def _ifttt_action(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        device = chance.choice(self.devices)
        body = {"actionFields": {"device": device, "power": chance.choice(("ON", "OFF"))}}
        await self._call(
            http, "ifttt", "POST", "/ifttt/v1/actions/set_power", json=body, headers=self._ifttt()
        )

    async def _live_feed(self, http: aiohttp.ClientSession, chance: random.Random) -> None:
        async with http.ws_connect(f"{self.base}/dashboard/ws", headers=self._api()) as ws:
            hello = await ws.receive_json(timeout=10)
            self.tally.note("dashboard", 101 if hello.get("type") == "hello" else 500, "ws")
            # Stay for a moment: a change made meanwhile is pushed to this feed.
            with contextlib.suppress(TimeoutError):
                await ws.receive(timeout=chance.uniform(0.05, 0.3))


def _header(namespace: str, name: str, *, correlation: bool = False) -> dict[str, Any]:
    header: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "payloadVersion": "3",
        "messageId": str(uuid.uuid4()),
    }
    if correlation:
        header["correlationToken"] = "soak-correlation-token"
    return header


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors a process has open."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def settle(base_url: str, timeout: float = 30.0) -> None:
    """Wait until the server's outbox is empty (read from /metrics) and idle a moment."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base_url}/metrics") as response:
                text = await response.text()
            if "\noutbox_pending_rows 0.0" in text:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # let closed connections and finished tasks be reaped
