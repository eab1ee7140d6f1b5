"""Fault injection: webhooks, the Alexa event gateway and IFTTT Realtime answering 500, 429,
hanging past the timeout or closing the connection mid-response.

Every upstream is a recording aiohttp server on 127.0.0.1 with a fault layer in front: each
request to the faulty path takes the next scripted fault, or passes through once the script
is spent. The app is whole (linked to Alexa through its OAuth server, IFTTT configured, a
webhook registered); a dispatcher with short retries and timeouts delivers its outbox.
Backoff is checked on the schedule the dispatcher wrote (``next_attempt_at`` of each retry
against when it was recorded), not on wall-clock gaps between requests.
"""

# The Alexa fixtures are imported by name, and tests take them as arguments of that name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from staterelay.app.factory import DISPATCHER_KEY
from staterelay.core import Core
from staterelay.core.events import OutboxEnqueued
from staterelay.core.records import ActivityEntry, Device, Principal
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.integrations.ifttt.realtime import IftttRealtimeSink
from staterelay.integrations.webhooks import WebhookSink
from staterelay.settings import Settings
from tests.alexa.conftest import (  # noqa: F401 - fixtures, requested by name
    Amazon,
    Clock,
    alexa_app,
    alexa_settings,
    browser,
    clock,
    core,
    granted,
    port,
    server,
    token,
    user,
)
from tests.ifttt.conftest import SERVICE_KEY, Linked, Realtime, ifttt_settings, link, poll
from tests.oauth.conftest import Client

TIMEOUT = 0.5  # webhook and IFTTT request timeout; the Alexa gateway's is fixed at 2.5 s
FAULTS = ["500", "close", "hang", "429"]
RETRY_AFTER = 1
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Faults:
    """Scripted failures in front of a recording handler, on one path."""

    path: str
    script: list[str] = field(default_factory=list)
    failing: str | None = None
    """While set, every request gets this fault once the script is spent."""
    met: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @web.middleware
    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer with the next fault, or let the recorder answer."""
        if request.path != self.path:
            return await handler(request)
        fault = self.script.pop(0) if self.script else (self.failing or "ok")
        self.met.append(fault)
        if fault == "ok":
            return await handler(request)
        await request.read()
        if fault == "hang":
            await self.release.wait()  # past every client timeout; freed at teardown
            return web.Response(status=503)
        if fault == "close":
            # Half a status line, then the connection goes away.
            assert request.transport is not None
            request.transport.write(b"HTTP/1.1 20")
            request.transport.close()
            return web.Response(status=500)
        headers = {"Retry-After": str(RETRY_AFTER)} if fault == "429" else {}
        return web.Response(status=int(fault), headers=headers)


async def serve(faults: Faults, handler: Handler) -> TestServer:
    """A loopback server: ``faults`` in front of ``handler`` on every path."""
    app = web.Application(middlewares=[faults.inject])
    app.router.add_route("*", "/{tail:.*}", handler)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    return test_server


@dataclass
class Hooks:
    """A webhook receiver: every request that got through."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        """Record the event."""
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=204)


@dataclass
class Upstreams:
    """The three faulty upstreams and what got through each."""

    hooks: Hooks
    hook_faults: Faults
    hook_url: str
    amazon: Amazon
    gateway_faults: Faults
    realtime: Realtime
    realtime_faults: Faults

    def all_faults(self) -> tuple[Faults, Faults, Faults]:
        """Webhook, Alexa gateway, IFTTT Realtime."""
        return (self.hook_faults, self.gateway_faults, self.realtime_faults)


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    """The webhook receiver, Amazon (LWA and gateway) and IFTTT Realtime, each faulty."""
    hooks, amazon, realtime = Hooks(), Amazon(), Realtime()
    hook_faults = Faults("/hook")
    gateway_faults = Faults("/v3/events")
    realtime_faults = Faults("/v1/notifications")
    servers = [
        await serve(hook_faults, hooks.handle),
        await serve(gateway_faults, amazon.handle),
        await serve(realtime_faults, realtime.handle),
    ]
    amazon.server, realtime.server = servers[1], servers[2]
    yield Upstreams(
        hooks=hooks,
        hook_faults=hook_faults,
        hook_url=f"http://127.0.0.1:{servers[0].port}/hook",
        amazon=amazon,
        gateway_faults=gateway_faults,
        realtime=realtime,
        realtime_faults=realtime_faults,
    )
    for faults in (hook_faults, gateway_faults, realtime_faults):
        faults.release.set()
    for running in servers:
        await running.close()


@pytest.fixture
def amazon(upstreams: Upstreams) -> Amazon:
    """Amazon on loopback, behind the gateway's fault layer (used by the Alexa fixtures)."""
    return upstreams.amazon


@pytest.fixture
def settings(settings: Settings, upstreams: Upstreams) -> Settings:
    """The suite's settings with IFTTT pointed at the faulty Realtime server."""
    return ifttt_settings(settings, upstreams.realtime.url)


@dataclass
class Household:
    """The linked household: Alexa's principal, IFTTT's link, a watched lamp with a webhook."""

    principal: Principal
    ifttt: Linked
    lamp: Device


@pytest.fixture
async def household(
    browser: Client, core: Core, granted: str, upstreams: Upstreams, clock: Clock
) -> Household:
    """Alexa linked (AcceptGrant done), IFTTT linked and watching a lamp, a webhook on it."""
    clock.run()
    principal = await core.auth.authenticate(granted)
    ifttt = await link(core, "ifttt-user@example.com")
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    body = {"triggerFields": {"device": lamp.id}, "trigger_identity": "ti-faults"}
    status, _ = await poll(browser, ifttt, "power_changed", body)
    assert status == 200
    person = await core.auth.authenticate(ifttt.api_key)  # webhooks are not for linked apps
    await core.webhooks.create(
        person, {"url": upstreams.hook_url, "event_types": ["state.changed"]}
    )
    return Household(principal=principal, ifttt=ifttt, lamp=lamp)


StartDispatcher = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def dispatch(
    alexa_app: web.Application, core: Core, settings: Settings
) -> AsyncIterator[StartDispatcher]:
    """Replace the app's dispatcher with one of short retries and short timeouts."""
    from staterelay.integrations.alexa import ALEXA_KEY

    started: list[tuple[Dispatcher, Callable[[], None], WebhookSink, IftttRealtimeSink]] = []

    async def start(**overrides: Any) -> Dispatcher:
        await alexa_app[DISPATCHER_KEY].stop()
        webhook = WebhookSink(
            core, timeout_seconds=TIMEOUT, max_response_bytes=65536, policy=core.webhooks.policy
        )
        ifttt = IftttRealtimeSink(
            url=settings.ifttt.realtime_url,
            service_key=SERVICE_KEY,
            clock=core.clock,
            timeout_seconds=TIMEOUT,
        )
        config: dict[str, Any] = {
            "owner": "faults",
            "retry_base_seconds": 0.1,
            "retry_factor": 4.0,
            "retry_cap_seconds": 5.0,
            "poll_seconds": 0.1,
            "trip_seconds": 0.0,
            **overrides,
        }
        dispatcher = Dispatcher(
            core,
            {"webhook": webhook, "alexa": alexa_app[ALEXA_KEY].sink, "ifttt": ifttt},
            config=DispatcherConfig(**config),
        )
        unsubscribe = core.bus.subscribe(OutboxEnqueued, lambda _event: dispatcher.wake())
        await dispatcher.start()
        started.append((dispatcher, unsubscribe, webhook, ifttt))
        return dispatcher

    yield start
    for dispatcher, unsubscribe, webhook, ifttt in started:
        unsubscribe()
        await dispatcher.stop()
        await webhook.close()
        await ifttt.close()


# helpers ------------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` (sync or async) until truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def deliveries(
    core: Core, who: Household, sink: str, device: Device | None = None
) -> list[ActivityEntry]:
    """The delivery rows of one sink for ``device`` (the lamp when None) after its
    creation, oldest first."""
    device_id = (device or who.lamp).id
    page = await core.activity.list(who.principal, device_id=device_id, limit=200)
    rows = [
        e
        for e in page.items
        if e.kind == "delivery"
        and e.detail.get("sink") == sink
        and e.detail.get("event_type") != "device.created"  # the discovery report, before
    ]
    return list(reversed(rows))


def epoch(text: Any) -> float:
    """An ISO time of the activity detail as epoch seconds."""
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


async def metrics(browser: Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The app's /metrics samples by name and labels."""
    response = await browser.get("/metrics")
    assert response.status == 200
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample (0 when absent)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def power_reports(amazon: Amazon) -> list[str]:
    """powerState values of the ChangeReports the gateway accepted, in order."""
    values = []
    for event in amazon.accepted():
        if event["event"]["header"]["name"] != "ChangeReport":
            continue
        for prop in event["event"]["payload"]["change"]["properties"]:
            if prop["name"] == "powerState":
                values.append(prop["value"])
    return values


# tests --------------------------------------------------------------------------------------


async def test_every_fault_is_retried_with_growing_backoff_until_delivered(
    core: Core, household: Household, upstreams: Upstreams, dispatch: StartDispatcher
) -> None:
    """500, a closed connection, a hang past the timeout and a 429 in turn: each sink retries
    each, waits longer after each backoff-timed failure, honours Retry-After, and delivers
    the event exactly once after the upstream recovers."""
    await dispatch()
    await upstreams.amazon.wait_events(1)  # the lamp's discovery report, before the faults
    for faults in upstreams.all_faults():
        faults.met.clear()
        faults.script = list(FAULTS)
    await core.devices.set_state(
        household.principal, household.lamp.id, {"power": "ON"}, source="api"
    )

    for sink in ("webhook", "alexa", "ifttt"):

        async def settled(sink: str = sink) -> list[ActivityEntry] | None:
            rows = await deliveries(core, household, sink)
            return rows if rows and rows[-1].detail["outcome"] == "delivered" else None

        rows = await wait_until(settled, timeout=30)
        assert [row.detail["outcome"] for row in rows] == ["retry"] * 4 + ["delivered"], sink
        assert [row.detail["attempt"] for row in rows] == [1, 2, 3, 4, 5]
        scheduled = [epoch(row.detail["next_attempt_at"]) for row in rows[:4]]
        assert scheduled == sorted(scheduled), sink
        waits = [at - row.created_at for at, row in zip(scheduled, rows, strict=False)]
        # Backoff ceilings 0.1, 0.4, 1.6 s with equal jitter: every wait is longer than the last.
        assert 0 < waits[0] < waits[1] < waits[2], (sink, waits)
        assert waits[3] == pytest.approx(RETRY_AFTER, abs=0.2), (sink, waits)
        errors = [str(row.detail["error"]) for row in rows[:4]]
        assert "500" in errors[0], (sink, errors)
        assert "429" in errors[3], (sink, errors)
        assert rows[0].detail["status_code"] == 500
        assert rows[1].detail["status_code"] is None  # no answer: the connection closed
        assert rows[2].detail["status_code"] is None  # no answer in time
        assert rows[3].detail["status_code"] == 429

    assert [f.met for f in upstreams.all_faults()] == [[*FAULTS, "ok"]] * 3
    [hook] = upstreams.hooks.bodies
    assert (hook["type"], hook["new"]) == ("state.changed", "ON")
    assert power_reports(upstreams.amazon) == ["ON"]
    assert upstreams.realtime.identities() == ["ti-faults"]
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 0)


async def test_events_of_an_outage_all_arrive_after_it(
    browser: Client,
    core: Core,
    household: Household,
    upstreams: Upstreams,
    dispatch: StartDispatcher,
) -> None:
    """Six changes while every upstream answers 503: once they recover, every webhook event
    arrives in order, Alexa gets the final state, IFTTT is nudged, and nothing stays queued."""
    await dispatch(retry_factor=1.0, retry_cap_seconds=0.2, retry_base_seconds=0.2)
    await upstreams.amazon.wait_events(1)
    for faults in upstreams.all_faults():
        faults.failing = "503"
    for n in range(6):
        power = "ON" if n % 2 == 0 else "OFF"
        await core.devices.set_state(
            household.principal, household.lamp.id, {"power": power}, source="api"
        )
    await wait_until(lambda: all(f.met.count("503") >= 3 for f in upstreams.all_faults()))
    for faults in upstreams.all_faults():
        faults.failing = None

    await wait_until(lambda: len(upstreams.hooks.bodies) >= 6)

    async def drained() -> bool:
        return (await core.outbox.stats()).pending == 0

    await wait_until(drained)
    versions = [body["version"] for body in upstreams.hooks.bodies]
    assert versions == [2, 3, 4, 5, 6, 7]  # every change, none twice, in order
    assert power_reports(upstreams.amazon)[-1] == "OFF"
    assert "ti-faults" in upstreams.realtime.identities()
    found = await metrics(browser)
    assert sample(found, "webhook_deliveries_total", outcome="delivered") == 6
    # Only the oldest waiting event was retried; the later ones waited behind it.
    assert sample(found, "webhook_deliveries_total", outcome="retry") >= 3
    assert sample(found, "alexa_changereport_failures_total", outcome="retry") >= 1
    assert sample(found, "ifttt_realtime_notifications_total", outcome="retry") >= 1
    assert sample(found, "ifttt_realtime_notifications_total", outcome="delivered") >= 1
    assert sample(found, "outbox_pending_rows") == 0


async def test_dead_rows_are_reported_in_the_activity_log_and_the_metrics(
    browser: Client,
    core: Core,
    household: Household,
    upstreams: Upstreams,
    dispatch: StartDispatcher,
) -> None:
    """Upstreams that never recover: after max_attempts each row is dead, the device's
    activity says so, and the metrics count it under ``dead``."""
    await dispatch(max_attempts=3)
    await upstreams.amazon.wait_events(1)
    before = await metrics(browser)
    for faults in upstreams.all_faults():
        faults.failing = "500"
    await core.devices.set_state(
        household.principal, household.lamp.id, {"power": "ON"}, source="api"
    )

    for sink in ("webhook", "alexa", "ifttt"):

        async def dead(sink: str = sink) -> list[ActivityEntry] | None:
            rows = await deliveries(core, household, sink)
            return rows if rows and rows[-1].detail["outcome"] == "dead" else None

        rows = await wait_until(dead)
        assert [row.detail["outcome"] for row in rows] == ["retry", "retry", "dead"], sink
        assert str(rows[-1].detail["error"]).endswith("giving up after 3 attempts")
        assert "next_attempt_at" not in rows[-1].detail

    found = await metrics(browser)
    assert sample(found, "webhook_deliveries_total", outcome="dead") == 1
    assert sample(found, "webhook_deliveries_total", outcome="retry") == 2
    assert sample(found, "alexa_changereport_failures_total", outcome="dead") == 1
    assert sample(found, "ifttt_realtime_notifications_total", outcome="dead") == 1
    assert sample(found, "outbox_deliveries_total", sink="alexa", outcome="dead") == 1
    assert sample(found, "outbox_dead_rows") == 3
    assert sample(found, "outbox_pending_rows") == 0
    sent = sample(found, "alexa_changereports_sent_total")
    assert sent == sample(before, "alexa_changereports_sent_total")  # nothing more accepted
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 3)


async def test_settings_point_every_sink_at_loopback(
    settings: Settings, upstreams: Upstreams
) -> None:
    """The fixtures wire IFTTT to the faulty server (a guard for the tests above)."""
    assert settings.ifttt.realtime_url == upstreams.realtime.url
    assert dataclasses.replace(settings).webhooks.allow_private_networks
