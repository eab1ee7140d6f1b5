"""Ordered delivery through gateway faults on PostgreSQL, with two replicas delivering.

The scenario of ``test_ordered_delivery`` (a contact sensor goes DETECTED, NOT_DETECTED,
DETECTED, NOT_DETECTED with a doorbell press after the second transition while the Alexa
event gateway fails), run by two whole apps (``create_app``) on one fresh PostgreSQL
database as its app role, sharing a bus through Redis, each with its own dispatcher. The
changes go through the replicas in turn.

Each replica reaches the recording Login with Amazon / event gateway fake of the fault tests
through its own loopback port (its ``alexa.lwa_token_url`` and ``alexa.event_gateway_url``),
so the fake knows which replica sent every request; it records when each request arrived
and when it was answered. The checks: each transition accepted exactly once, in order, with
its own value and time; one press; no request sent twice (every messageId once); the
requests of one ordering key (an endpoint of the linked user) never in flight at two
replicas, or twice, at once; every row delivered (202) in the activity log; the outbox empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.core import Core
from staterelay.core.crypto import load_or_create_secret
from staterelay.core.records import ActivityEntry, Device, Principal
from staterelay.settings import (
    DatabaseSettings,
    DispatchSettings,
    RedisSettings,
    Settings,
    WebhookSettings,
    load_settings,
)
from tests.alexa.conftest import (
    Amazon,
    accept_grant,
    alexa_settings_for,
    assert_valid,
    link_account,
    send,
)
from tests.oauth.conftest import EMAIL, PASSWORD
from tests.postgres_support import ScratchDatabase, migrated_database, require_postgres
from tests.processes import free_port
from tests.redis_support import delete_prefixed, require_redis, unique_prefix
from tests.test_faults import RETRY_AFTER, Faults, wait_until

TRANSITIONS = ("DETECTED", "NOT_DETECTED", "DETECTED", "NOT_DETECTED")
GATEWAY = "/v3/events"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class GatewayRequest:
    """One request to the event gateway: who sent it, what it was, when, and the answer."""

    replica: str
    body: dict[str, Any]
    arrived: float  # time.monotonic() on arrival
    answered: float = math.inf  # time.monotonic() once the answer was made
    status: int | None = None

    @property
    def name(self) -> str:
        """The event's header name (ChangeReport, DoorbellPress, AddOrUpdateReport...)."""
        name: str = self.body["event"]["header"]["name"]
        return name

    @property
    def message_id(self) -> str:
        """The event's messageId."""
        message_id: str = self.body["event"]["header"]["messageId"]
        return message_id

    @property
    def endpoint(self) -> str | None:
        """The endpoint the event is about (its ordering key, with the one linked user); a
        discovery report names its one endpoint in its payload."""
        event = self.body["event"]
        if "endpoint" in event:
            endpoint_id: str = event["endpoint"]["endpointId"]
            return endpoint_id
        listed = event["payload"].get("endpoints") or []
        return listed[0]["endpointId"] if len(listed) == 1 else None

    def detection(self) -> tuple[str, float] | None:
        """(detectionState, timeOfSample) of a ChangeReport carrying one: the row it is for."""
        if self.name != "ChangeReport":
            return None
        for prop in self.body["event"]["payload"]["change"]["properties"]:
            if prop["name"] == "detectionState":
                return prop["value"], _epoch(prop["timeOfSample"])
        return None


@dataclass
class Gateway:
    """Every event gateway request of both replicas, in arrival order, with its answer."""

    requests: list[GatewayRequest] = field(default_factory=list)

    def recorder(self, replica: str) -> Any:
        """The outermost middleware of ``replica``'s port: record before the faults answer."""

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path != GATEWAY:
                return await handler(request)
            body = json.loads(await request.read())  # aiohttp keeps it for the handler
            entry = GatewayRequest(replica, body, time.monotonic())
            self.requests.append(entry)
            try:
                response = await handler(request)
            finally:
                entry.answered = time.monotonic()
            entry.status = response.status
            return response

        return record

    def of(self, endpoint: str) -> list[GatewayRequest]:
        """The requests about one endpoint, in arrival order."""
        return [r for r in self.requests if r.endpoint == endpoint]


@dataclass
class Replica:
    """One StateRelay instance: its app, core, server and the household's principal there."""

    name: str
    app: web.Application
    server: TestServer
    principal: Principal | None = None

    @property
    def core(self) -> Core:
        """The replica's core."""
        return self.app[CORE_KEY]


@dataclass
class Cluster:
    """Two replicas on one database and one Redis, Amazon's fake and its fault layer."""

    a: Replica
    b: Replica
    amazon: Amazon
    faults: Faults
    gateway: Gateway
    database: ScratchDatabase

    @property
    def replicas(self) -> tuple[Replica, Replica]:
        """Both, A first."""
        return (self.a, self.b)


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database migrated by its owner (skips, saying why, without PostgreSQL)."""
    require_postgres()
    async with migrated_database() as fresh:
        yield fresh


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[str, str]]:
    """(URL, key prefix) on the shared Redis (skips, saying why, without it)."""
    url = require_redis()
    prefix = unique_prefix()
    yield url, prefix
    await delete_prefixed(url, prefix)


async def _serve(app: web.Application, port: int | None = None) -> TestServer:
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


@pytest.fixture
async def cluster(
    tmp_path: Path, database: ScratchDatabase, redis_prefix: tuple[str, str]
) -> AsyncIterator[ClusterFactory]:
    """Start Amazon's fake (a port per replica) and two replicas with ``dispatch`` settings;
    the user links Alexa through replica A (account linking, then AcceptGrant)."""
    started: list[TestServer] = []
    clients: list[TestClient[web.Request, web.Application]] = []
    faults = Faults(GATEWAY)

    async def start(dispatch: DispatchSettings) -> Cluster:
        amazon, gateway = Amazon(), Gateway()
        fronts = {}
        for name in ("a", "b"):
            front = web.Application(middlewares=[gateway.recorder(name), faults.inject])
            front.router.add_route("*", "/{tail:.*}", amazon.handle)
            fronts[name] = await _serve(front)
            started.append(fronts[name])
        amazon.server = fronts["a"]
        data_dir = tmp_path / "data"  # shared: the replicas need the same secret key
        base = load_settings(data_dir=data_dir, environ={})
        secret = load_or_create_secret(base.secret_key_path)
        redis_url, prefix = redis_prefix
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            shared = dataclasses.replace(
                base,
                database=DatabaseSettings(url=database.app_url),
                redis=RedisSettings(url=redis_url, key_prefix=prefix),
                dispatch=dispatch,
                webhooks=WebhookSettings(allow_private_networks=True, timeout_seconds=2.0),
            )
            settings: Settings = alexa_settings_for(shared, port, amazon)
            own = f"http://127.0.0.1:{fronts[name].port}"
            settings = dataclasses.replace(
                settings,
                alexa=dataclasses.replace(
                    settings.alexa,
                    lwa_token_url=f"{own}/auth/o2/token",
                    event_gateway_url=f"{own}{GATEWAY}",
                ),
            )
            app = create_app(settings, instance_secret=secret)
            server = await _serve(app, port)
            started.append(server)
            replicas.append(Replica(name, app, server))
        a, b = replicas
        await a.core.users.create(email=EMAIL, password=PASSWORD)
        browser: TestClient[web.Request, web.Application] = TestClient(a.server)
        await browser.start_server()
        clients.append(browser)
        token = await link_account(browser)
        status, answer = await send(browser, accept_grant(token))
        assert status == 200, answer
        assert answer["event"]["header"]["name"] == "AcceptGrant.Response", answer
        for replica in replicas:
            replica.principal = await replica.core.auth.authenticate(token)
        return Cluster(a, b, amazon, faults, gateway, database)

    yield start
    faults.release.set()
    for client in clients:
        await client.close()
    for server in reversed(started):  # the replicas first (their dispatchers stop), then Amazon
        await server.close()


# helpers ------------------------------------------------------------------------------------


def door_reports(cluster: Cluster, door: Device) -> list[tuple[str, float]]:
    """(detectionState, timeOfSample) of the door's accepted ChangeReports, in order."""
    found = []
    for request in cluster.gateway.of(door.id):
        if request.status != 202 or request.name != "ChangeReport":
            continue
        assert_valid(request.body)
        detection = request.detection()
        assert detection is not None
        found.append(detection)
    return found


def presses(cluster: Cluster, bell: Device) -> int:
    """DoorbellPress events of the bell the gateway accepted."""
    return sum(
        1 for r in cluster.gateway.of(bell.id) if r.status == 202 and r.name == "DoorbellPress"
    )


async def create_button(replica: Replica, name: str) -> Device:
    """A button made through ``replica``."""
    assert replica.principal is not None
    return await replica.core.devices.create(
        replica.principal, type="button", name=name, source="api"
    )


async def sensors(cluster: Cluster) -> tuple[Device, Device]:
    """A door sensor (made through A) and a doorbell (through B), both discovered by Alexa."""
    a, b = cluster.replicas
    assert a.principal is not None
    assert b.principal is not None
    door = await a.core.devices.create(
        a.principal, type="contact_sensor", name="Door", source="api"
    )
    bell = await create_button(b, "Bell")

    def discovered() -> bool:
        return all(
            any(r.name == "AddOrUpdateReport" and r.status == 202 for r in cluster.gateway.of(d))
            for d in (door.id, bell.id)
        )

    await wait_until(discovered, timeout=10)
    return door, bell


async def act(cluster: Cluster, door: Device, bell: Device) -> list[float]:
    """The four transitions, through A, B, A, B; the press after the second (through A);
    returns the transitions' times."""
    times = []
    for n, value in enumerate(TRANSITIONS):
        replica = cluster.replicas[n % 2]
        assert replica.principal is not None
        changed = await replica.core.devices.set_state(
            replica.principal, door.id, {"detection": value}, source="api"
        )
        times.append(changed.properties["detection"].changed_at)
        if n == 1:
            assert cluster.a.principal is not None
            await cluster.a.core.devices.press(cluster.a.principal, bell.id, source="api")
        await asyncio.sleep(0.01)
    return times


async def drained(cluster: Cluster) -> bool:
    """Nothing left to send (as both replicas see it)."""
    for replica in cluster.replicas:
        if (await replica.core.outbox.stats()).pending:
            return False
    return True


async def alexa_deliveries(cluster: Cluster, device: Device) -> list[ActivityEntry]:
    """The device's Alexa delivery entries after its discovery report, oldest first (the
    activity log is shared: both replicas write it)."""
    a = cluster.a
    assert a.principal is not None
    page = await a.core.activity.list(a.principal, device_id=device.id, limit=200)
    return [
        e
        for e in reversed(page.items)
        if e.kind == "delivery"
        and e.detail.get("sink") == "alexa"
        and e.detail.get("event_type") != "device.created"
    ]


def assert_no_overlap(cluster: Cluster, endpoint: str) -> None:
    """The requests of one ordering key went one at a time: each arrived only after the one
    before it was answered, whichever replica sent them."""
    requests = cluster.gateway.of(endpoint)
    for before, after in itertools.pairwise(requests):
        assert after.arrived >= before.answered, (
            f"{endpoint}: a {after.name} from replica {after.replica} arrived while a"
            f" {before.name} from replica {before.replica} was in flight"
        )


async def check_streams(
    cluster: Cluster, door: Device, bell: Device, times: list[float]
) -> list[ActivityEntry]:
    """Every transition accepted once, in order, with its own value and time; one press;
    no request twice; no key in flight twice at once; every door row delivered (202); the
    outbox empty. Returns the door's Alexa delivery entries."""
    reports = door_reports(cluster, door)
    assert [value for value, _ in reports] == list(TRANSITIONS)
    assert [at for _, at in reports] == pytest.approx(times, abs=0.002)
    assert presses(cluster, bell) == 1
    # Each request is an event of its own (a new messageId), none sent twice...
    ids = Counter(r.message_id for r in cluster.gateway.requests)
    assert [i for i, n in ids.items() if n > 1] == []
    # ...each row's report accepted once, by one replica (a retry may come from either)...
    accepted_per_row = Counter(
        r.detection() for r in cluster.gateway.of(door.id) if r.status == 202 and r.detection()
    )
    assert sorted(accepted_per_row.values()) == [1] * 4
    # ...and the rows of one key never in flight at once, at one replica or at two.
    for device in (door, bell):
        assert_no_overlap(cluster, device.id)
    entries = await alexa_deliveries(cluster, door)
    finals = [e for e in entries if e.detail["outcome"] != "retry"]
    assert [(e.detail["outcome"], e.detail["status_code"]) for e in finals] == [
        ("delivered", 202)
    ] * 4
    assert len({e.detail["event_id"] for e in finals}) == 4
    for replica in cluster.replicas:
        stats = await replica.core.outbox.stats()
        assert (stats.pending, stats.dead) == (0, 0)
        assert replica.app[DISPATCHER_KEY].in_flight == 0
    return entries


# tests --------------------------------------------------------------------------------------


async def test_a_503_window_keeps_order_across_two_replicas_on_postgres(
    cluster: ClusterFactory,
) -> None:
    """The issue's scenario on the replicas' own dispatchers (default first retry, 1 s): the
    gateway answers 503 for 1.5 s while the door goes through four transitions (through A
    and B in turn) and the bell is pressed. Alexa gets the four transitions once each, in
    order, each with its own time, and the press once; no key is in flight at two replicas
    at once; the head row's first retry comes within about a second of its failure."""
    running = await cluster(DispatchSettings())
    door, bell = await sensors(running)
    running.faults.failing = "503"
    started = time.monotonic()
    times = await act(running, door, bell)
    await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    running.faults.failing = None
    await wait_until(lambda: drained(running), timeout=30)
    await wait_until(lambda: len(door_reports(running, door)) == 4)
    entries = await check_streams(running, door, bell, times)

    door_requests = [r for r in running.gateway.of(door.id) if r.name == "ChangeReport"]
    failed = [r for r in door_requests if r.status == 503]
    assert failed, "the 503 window failed no report"
    head, retry = door_requests[0], door_requests[1]
    assert head.status == 503
    assert retry.detection() == head.detection()  # the head row again, before any other
    assert 0.4 <= retry.arrived - head.answered <= 1.05  # one failure still lands within 3 s
    retries = [e for e in entries if e.detail["outcome"] == "retry"]
    assert len(retries) == len(failed)
    assert all(e.detail["status_code"] == 503 for e in retries)


async def test_a_429_with_retry_after_keeps_order_across_two_replicas_on_postgres(
    cluster: ClusterFactory,
) -> None:
    """The gateway answers its next three requests 429 with Retry-After (short first retry
    otherwise): every transition still arrives once and in order, the press once, no key in
    flight at two replicas at once, and no row is retried before its Retry-After."""
    running = await cluster(DispatchSettings(first_retry_seconds=0.2))
    door, bell = await sensors(running)
    running.faults.met.clear()
    running.faults.script = ["429"] * 3
    times = await act(running, door, bell)
    await wait_until(lambda: drained(running), timeout=30)
    await wait_until(lambda: len(door_reports(running, door)) == 4)
    entries = await check_streams(running, door, bell, times)
    assert running.faults.met[:3] == ["429"] * 3
    retries = [e for e in entries if e.detail["outcome"] == "retry"]
    assert retries, "no door report met a 429"
    assert {e.detail["status_code"] for e in retries} == {429}
    # A row that got a 429 was not tried again before Retry-After said (a lower bound only).
    by_row: defaultdict[Any, list[GatewayRequest]] = defaultdict(list)
    for request in running.gateway.requests:
        if request.endpoint in (door.id, bell.id) and request.name != "AddOrUpdateReport":
            key = request.detection() or (request.endpoint, request.name)
            by_row[key].append(request)
    for attempts in by_row.values():
        for before, after in itertools.pairwise(attempts):
            assert before.status == 429
            assert after.arrived - before.answered >= RETRY_AFTER - 0.05


async def test_a_button_can_be_created_on_postgres(cluster: ClusterFactory) -> None:
    """A doorbell (a ``button``) is created on PostgreSQL as on SQLite: its unset
    ``last_pressed_at`` is stored as JSON null (asyncpg would send ``None`` as SQL NULL)."""
    running = await cluster(DispatchSettings())
    a = running.a
    assert a.principal is not None
    bell = await a.core.devices.create(a.principal, type="button", name="Bell", source="api")
    assert bell.properties["last_pressed_at"].value is None
    stored = await running.b.core.devices.get(a.principal, bell.id)
    assert stored.properties["last_pressed_at"].value is None
    await running.b.core.devices.press(a.principal, bell.id, source="api")
    pressed = await a.core.devices.get(a.principal, bell.id)
    assert isinstance(pressed.properties["last_pressed_at"].value, str)
