"""Proactive events end to end: link, AcceptGrant, discover, control, and every change reaching
the (recording) Alexa event gateway as a schema-valid message, through refreshes, refusals,
outages and restarts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.core import Core
from staterelay.core.clock import iso
from staterelay.core.records import Principal
from staterelay.integrations.alexa import ALEXA_KEY
from staterelay.integrations.alexa.change_report import cause_for, gateway_url
from staterelay.settings import AlexaSettings, Settings
from tests.alexa.conftest import (
    RELAY_SECRET,
    Amazon,
    Clock,
    FastDispatcher,
    accept_grant,
    alexa_settings_for,
    assert_valid,
    directive,
    send,
    start_amazon,
)
from tests.conftest import link_oauth_client, make_account
from tests.oauth.conftest import Client

JSON = dict[str, Any]


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def change(event: JSON) -> dict[tuple[str, str], Any]:
    """``(namespace, name) -> value`` of a ChangeReport's change."""
    props = event["event"]["payload"]["change"]["properties"]
    return {(p["namespace"], p["name"]): p["value"] for p in props}


def context(event: JSON) -> dict[tuple[str, str], Any]:
    """``(namespace, name) -> value`` of an event's context."""
    return {(p["namespace"], p["name"]): p["value"] for p in event["context"]["properties"]}


def names(amazon: Amazon) -> list[str]:
    """``namespace.name`` of every event the gateway got."""
    return [
        f"{c.json()['event']['header']['namespace']}.{c.json()['event']['header']['name']}"
        for c in amazon.events
    ]


async def settle(core: Core) -> None:
    """Let the dispatcher finish what is due, and the bus its handlers."""
    for _ in range(200):
        stats = await core.outbox.stats()
        if stats.pending == 0:
            break
        await asyncio.sleep(0.02)
    await core.bus.drain()


async def test_the_whole_story(
    browser: Client, core: Core, token: str, amazon: Amazon, clock: Clock
) -> None:
    """Link as Alexa does, AcceptGrant, discover, TurnOn, then an API change reaches Alexa."""
    # AcceptGrant: Alexa sends it right after account linking.
    status, answer = await send(browser, accept_grant(token))
    assert status == 200
    assert answer["event"]["header"]["name"] == "AcceptGrant.Response"
    assert [c.form()["grant_type"] for c in amazon.lwa_calls] == ["authorization_code"]

    # A device made in the API is announced to Alexa at once (no rediscovery needed).
    made = await browser.post(
        "/api/v1/devices", json={"type": "switch", "name": "Porch light"}, headers=bearer(token)
    )
    assert made.status == 201
    lamp = await made.json()
    [call] = await amazon.wait_events(1)
    report = call.json()
    assert_valid(report)
    assert report["event"]["header"]["name"] == "AddOrUpdateReport"
    assert report["event"]["payload"]["scope"] == {
        "type": "BearerToken",
        "token": "Atza|access-1",
    }
    assert report["event"]["payload"]["endpoints"][0]["endpointId"] == lamp["id"]
    assert call.headers["Authorization"] == "Bearer Atza|access-1"

    status, answer = await send(browser, directive("Alexa.Discovery", "Discover", token))
    assert status == 200
    assert [e["endpointId"] for e in answer["event"]["payload"]["endpoints"]] == [lamp["id"]]

    clock.now += 1
    status, answer = await send(
        browser, directive("Alexa.PowerController", "TurnOn", token, lamp["id"])
    )
    assert status == 200
    assert answer["event"]["header"]["name"] == "Response"
    # Amazon wants a ChangeReport for changes its own directives made, too.
    calls = await amazon.wait_events(2)
    voice = calls[1].json()
    assert_valid(voice)
    assert voice["event"]["header"]["name"] == "ChangeReport"
    assert "correlationToken" not in voice["event"]["header"]
    assert voice["event"]["payload"]["change"]["cause"] == {"type": "VOICE_INTERACTION"}
    assert change(voice) == {("Alexa.PowerController", "powerState"): "ON"}
    assert context(voice) == {("Alexa.EndpointHealth", "connectivity"): {"value": "OK"}}

    clock.now += 1
    put = await browser.put(
        f"/api/v1/devices/{lamp['id']}/state", json={"power": "OFF"}, headers=bearer(token)
    )
    assert put.status == 200
    calls = await amazon.wait_events(3)
    app_change = calls[2].json()
    assert_valid(app_change)
    assert app_change["event"]["endpoint"] == {
        "scope": {"type": "BearerToken", "token": "Atza|access-1"},
        "endpointId": lamp["id"],
    }
    assert calls[2].headers["Authorization"] == "Bearer Atza|access-1"
    assert calls[2].headers["Content-Type"] == "application/json"
    assert app_change["event"]["payload"]["change"]["cause"] == {"type": "APP_INTERACTION"}
    [power] = app_change["event"]["payload"]["change"]["properties"]
    assert power["value"] == "OFF"
    assert power["timeOfSample"] == iso(clock.now)
    await settle(core)

    # Every result is in the device's activity log.
    activity = await browser.get(f"/api/v1/devices/{lamp['id']}/activity", headers=bearer(token))
    deliveries = [e["detail"] for e in (await activity.json())["items"] if e["kind"] == "delivery"]
    assert [(d["sink"], d["status_code"], d["outcome"]) for d in deliveries] == [
        ("alexa", 202, "delivered")
    ] * 3
    # And the link's health is one call away.
    health = await browser.get("/api/v1/integrations/alexa", headers=bearer(token))
    assert health.status == 200
    body = await health.json()
    assert body["linked"] is True
    assert body["region"] == "NA"
    assert body["proactive_events_configured"] is True
    assert body["last_change_report"]["status_code"] == 202
    assert body["last_change_report"]["error"] is None
    assert body["token"]["expires_at"] is not None
    assert body["token"]["last_error"] is None


async def test_status_before_linking(browser: Client, token: str) -> None:
    health = await browser.get("/api/v1/integrations/alexa", headers=bearer(token))
    assert await health.json() == {
        "linked": False,
        "region": None,
        "linked_at": None,
        "proactive_events_configured": True,
        "last_change_report": None,
        "token": None,
        "unlinked_at": None,
        "unlinked_reason": None,
    }
    nobody = await browser.get("/api/v1/integrations/alexa")
    assert nobody.status == 401


async def test_no_grant_no_rows(core: Core, principal: Principal, amazon: Amazon) -> None:
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    assert (await core.outbox.stats()).pending == 0
    await asyncio.sleep(0.1)
    assert amazon.events == []


async def test_lifecycle_reports_keep_no_ghosts(
    core: Core, principal: Principal, granted: str, amazon: Amazon, clock: Clock
) -> None:
    desk = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await amazon.wait_events(1)
    clock.now += 1
    await core.devices.update(principal, desk.id, fields={"name": "Desk lamp"}, source="ui")
    await amazon.wait_events(2)
    clock.now += 1
    await core.devices.delete(principal, desk.id, source="api")
    events = [c.json() for c in await amazon.wait_events(3)]
    assert names(amazon) == [
        "Alexa.Discovery.AddOrUpdateReport",
        "Alexa.Discovery.AddOrUpdateReport",
        "Alexa.Discovery.DeleteReport",
    ]
    assert_valid(events[0])
    assert_valid(events[1])
    assert events[1]["event"]["payload"]["endpoints"][0]["friendlyName"] == "Desk lamp"
    # Amazon's schema has no DeleteReport: it is checked against the documented shape
    # (Alexa.Discovery docs; Home Assistant sends the same).
    delete = events[2]["event"]
    assert set(delete) == {"header", "payload"}
    assert delete["header"]["payloadVersion"] == "3"
    assert delete["payload"] == {
        "endpoints": [{"endpointId": desk.id}],
        "scope": {"type": "BearerToken", "token": "Atza|access-1"},
    }


async def test_routine_switch_reports_both_interfaces_and_every_transition(
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    clock: Clock,
    fast_dispatcher: FastDispatcher,
    alexa_app: web.Application,
) -> None:
    movie = await core.devices.create(
        principal, type="switch", name="Movie", source="api", options={"routine_trigger": True}
    )
    await amazon.wait_events(1)
    await alexa_app[DISPATCHER_KEY].stop()  # changes pile up, as in a burst
    for value in ("ON", "OFF", "ON", "OFF"):
        clock.now += 0.01
        await core.devices.set_state(principal, movie.id, {"power": value}, source="ifttt")
    await fast_dispatcher()
    calls = await amazon.wait_events(5)
    reports = [c.json() for c in calls[1:]]
    for report in reports:
        assert_valid(report)
        assert report["event"]["payload"]["change"]["cause"] == {"type": "RULE_TRIGGER"}
        assert context(report) == {("Alexa.EndpointHealth", "connectivity"): {"value": "OK"}}
    # Every transition, in order: a Routine starts on the contact opening.
    assert [change(r) for r in reports] == [
        {
            ("Alexa.PowerController", "powerState"): power,
            ("Alexa.ContactSensor", "detectionState"): detection,
        }
        for power, detection in (
            ("ON", "DETECTED"),
            ("OFF", "NOT_DETECTED"),
            ("ON", "DETECTED"),
            ("OFF", "NOT_DETECTED"),
        )
    ]
    times = [r["event"]["payload"]["change"]["properties"][0]["timeOfSample"] for r in reports]
    assert times == sorted(times)
    assert len(set(times)) == 4


async def test_contact_sensor_pulse_and_doorbell_press(
    core: Core, principal: Principal, granted: str, amazon: Amazon, clock: Clock
) -> None:
    door = await core.devices.create(principal, type="contact_sensor", name="Door", source="api")
    bell = await core.devices.create(principal, type="button", name="Bell", source="api")
    await amazon.wait_events(2)
    clock.now += 1
    await core.devices.set_state(principal, door.id, {"detection": "DETECTED"}, source="api")
    await core.devices.set_state(principal, door.id, {"detection": "NOT_DETECTED"}, source="api")
    await core.devices.press(principal, bell.id, source="api")
    calls = await amazon.wait_events(5)
    by_endpoint: dict[str, list[JSON]] = {}
    for call in calls[2:]:
        message = call.json()
        assert_valid(message)
        by_endpoint.setdefault(message["event"]["endpoint"]["endpointId"], []).append(message)
    assert [change(m) for m in by_endpoint[door.id]] == [
        {("Alexa.ContactSensor", "detectionState"): "DETECTED"},
        {("Alexa.ContactSensor", "detectionState"): "NOT_DETECTED"},
    ]
    assert by_endpoint[door.id][0]["event"]["payload"]["change"]["cause"] == {
        "type": "PHYSICAL_INTERACTION"
    }
    [press] = by_endpoint[bell.id]
    assert press["event"]["header"]["namespace"] == "Alexa.DoorbellEventSource"
    assert press["event"]["header"]["name"] == "DoorbellPress"
    assert press["event"]["payload"]["cause"] == {"type": "PHYSICAL_INTERACTION"}
    assert press["event"]["payload"]["timestamp"].endswith("Z")


async def test_bursts_are_coalesced_without_losing_the_final_state(
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    clock: Clock,
    fast_dispatcher: FastDispatcher,
    alexa_app: web.Application,
) -> None:
    desk = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await amazon.wait_events(1)
    await alexa_app[DISPATCHER_KEY].stop()
    clock.now += 0.5
    await core.devices.set_state(principal, desk.id, {"power": "ON"}, source="ui")
    for level in range(5, 100, 5):
        clock.now += 0.01
        await core.devices.set_state(principal, desk.id, {"brightness": level}, source="ui")
    # Twenty changes, one row: each merged into the row no one had picked up yet.
    assert (await core.outbox.stats()).pending == 1
    await fast_dispatcher()
    await settle(core)
    await asyncio.sleep(0.1)
    reports = [c.json() for c in amazon.events[1:]]
    # The row carries everything that changed with or after it.
    assert len(reports) == 1
    assert_valid(reports[0])
    assert change(reports[0]) == {
        ("Alexa.PowerController", "powerState"): "ON",
        ("Alexa.BrightnessController", "brightness"): 95,
    }
    assert context(reports[0]) == {("Alexa.EndpointHealth", "connectivity"): {"value": "OK"}}
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 0)


async def test_a_change_merged_into_a_waiting_row_is_not_lost(
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    clock: Clock,
    fast_dispatcher: FastDispatcher,
) -> None:
    """Change 2 gets a row while row 1 is out; change 3 merges into row 2. Row 1's report
    read the state after change 2, so row 2 looks covered, yet it also stands for change 3.
    """
    await fast_dispatcher(max_in_flight=1)
    desk = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await amazon.wait_events(1)
    clock.now += 3500  # the next send refreshes the LWA token first: a pause before building
    amazon.lwa_hold, amazon.hold = asyncio.Event(), asyncio.Event()
    await core.devices.set_state(principal, desk.id, {"brightness": 10}, source="api")
    await wait_for(lambda: len(amazon.lwa_calls) == 2)
    clock.now += 0.01
    await core.devices.set_state(principal, desk.id, {"brightness": 20}, source="api")
    amazon.lwa_hold.set()
    await amazon.wait_events(2)  # row 1's report, built after change 2, is on the wire
    clock.now += 0.01
    await core.devices.set_state(principal, desk.id, {"brightness": 30}, source="api")
    assert (await core.outbox.stats()).pending == 2  # row 1, and row 2 now standing for 3
    amazon.hold.set()
    await settle(core)
    await asyncio.sleep(0.1)
    reports = [c.json() for c in amazon.events[1:]]
    levels = [change(r)[("Alexa.BrightnessController", "brightness")] for r in reports]
    assert levels == [20, 30]


async def test_a_covered_row_says_which_report_carried_it(
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    clock: Clock,
    fast_dispatcher: FastDispatcher,
) -> None:
    """Row 2's change went out in row 1's report (built after it): nothing is sent for row 2,
    and its activity says "merged" and names row 1's event, never "accepted"."""
    from staterelay.ui.present import delivery_text

    await fast_dispatcher(max_in_flight=1)
    desk = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await amazon.wait_events(1)
    clock.now += 3500  # the next send refreshes the LWA token first: a pause before building
    amazon.lwa_hold = asyncio.Event()
    await core.devices.set_state(principal, desk.id, {"brightness": 10}, source="api")
    await wait_for(lambda: len(amazon.lwa_calls) == 2)
    clock.now += 0.01
    await core.devices.set_state(principal, desk.id, {"brightness": 20}, source="api")
    amazon.lwa_hold.set()
    await settle(core)
    await asyncio.sleep(0.1)
    reports = [c.json() for c in amazon.events[1:]]
    assert len(reports) == 1
    assert change(reports[0])[("Alexa.BrightnessController", "brightness")] == 20
    activity = await core.activity.list(principal, device_id=desk.id)
    first, second = [
        e.detail
        for e in reversed(activity.items)
        if e.kind == "delivery" and e.detail["event_type"] == "state.changed"
    ]
    assert (first["outcome"], first["status_code"]) == ("delivered", 202)
    assert (second["outcome"], second["status_code"]) == ("merged", None)
    assert second["merged_into"] == first["event_id"]
    text, tone = delivery_text(second)
    assert text == f"Alexa ChangeReport merged into the report sent for {first['event_id']}"
    assert tone == "ok"
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 0)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` is true."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


async def test_token_refreshed_ahead_of_expiry(
    core: Core, principal: Principal, granted: str, amazon: Amazon, clock: Clock
) -> None:
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    clock.now += 3600 - 299  # inside the last five minutes of the LWA token
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    calls = await amazon.wait_events(2)
    assert [c.form() for c in amazon.lwa_calls][1] == {
        "grant_type": "refresh_token",
        "refresh_token": "Atzr|refresh-1",
        "client_id": "amzn1.application-oa2-client.staterelaytest",
        "client_secret": "messaging-secret-for-tests",
    }
    assert calls[1].headers["Authorization"] == "Bearer Atza|access-2"
    assert calls[1].json()["event"]["endpoint"]["scope"]["token"] == "Atza|access-2"
    grant = await core.store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
    assert grant is not None
    link = await core.alexa.active_link(principal.tenant_id, grant.id)
    assert link is not None
    assert link.refresh_token == "Atzr|refresh-2"  # the new refresh token is kept
    assert grant.refreshed_at == clock.now
    # The next change needs no refresh.
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    await amazon.wait_events(3)
    assert len(amazon.lwa_calls) == 2


async def test_concurrent_sends_refresh_once(
    core: Core, principal: Principal, granted: str, amazon: Amazon, clock: Clock
) -> None:
    devices = [
        await core.devices.create(principal, type="switch", name=f"L{n}", source="api")
        for n in range(6)
    ]
    await amazon.wait_events(6)
    clock.now += 3500
    await asyncio.gather(
        *(core.devices.set_state(principal, d.id, {"power": "ON"}, source="api") for d in devices)
    )
    calls = await amazon.wait_events(12)
    assert len(amazon.lwa_calls) == 2
    assert {c.headers["Authorization"] for c in calls[6:]} == {"Bearer Atza|access-2"}


async def test_gateway_401_refreshes_and_retries_once(
    browser: Client, core: Core, principal: Principal, granted: str, amazon: Amazon
) -> None:
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    amazon.gateway_script = [(401, "INVALID_ACCESS_TOKEN_EXCEPTION", {})]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    calls = await amazon.wait_events(3)
    assert [c.status for c in calls] == [202, 401, 202]
    assert calls[1].headers["Authorization"] == "Bearer Atza|access-1"
    assert calls[2].headers["Authorization"] == "Bearer Atza|access-2"
    assert change(calls[2].json()) == {("Alexa.PowerController", "powerState"): "ON"}
    await settle(core)
    body = await (await browser.get("/api/v1/integrations/alexa", headers=bearer(granted))).json()
    assert body["token"]["last_refresh_at"] is not None


async def test_skill_disabled_unlinks_the_user(
    browser: Client, core: Core, principal: Principal, granted: str, amazon: Amazon
) -> None:
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    amazon.gateway_script = [(403, "SKILL_DISABLED_EXCEPTION", {})]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await amazon.wait_events(2)
    await settle(core)
    activity = await core.activity.list(principal, device_id=lamp.id)
    [delivery] = [e for e in activity.items if e.kind == "delivery"][:1]
    assert delivery.detail["error"] == "Alexa 403 SKILL_DISABLED_EXCEPTION"
    assert delivery.detail["outcome"] == "dead"
    assert delivery.detail["status_code"] == 403
    body = await (await browser.get("/api/v1/integrations/alexa", headers=bearer(granted))).json()
    assert body["linked"] is False
    assert "SKILL_DISABLED_EXCEPTION" in body["unlinked_reason"]
    assert body["last_change_report"]["error"] == "Alexa 403 SKILL_DISABLED_EXCEPTION"
    grant = await core.store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
    assert grant is not None
    assert grant.access_token_ciphertext is None
    # Nothing more is queued or sent for this user.
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    assert (await core.outbox.stats()).pending == 0
    await asyncio.sleep(0.1)
    assert len(amazon.events) == 2
    # Enabling the skill again sends a new AcceptGrant, which links again.
    _status, answer = await send(browser, accept_grant(granted))
    assert answer["event"]["header"]["name"] == "AcceptGrant.Response"
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await amazon.wait_events(3)


async def test_refresh_refused_unlinks(
    core: Core, principal: Principal, granted: str, amazon: Amazon, clock: Clock
) -> None:
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    amazon.refresh_error = "invalid_grant"
    clock.now += 3500
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    status = await core.alexa.status(principal)
    assert not status.linked
    assert status.unlinked_reason is not None
    assert "invalid_grant" in status.unlinked_reason
    assert len(amazon.events) == 1


async def test_throttled_then_delivered(
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    fast_dispatcher: FastDispatcher,
    clock: Clock,
) -> None:
    clock.run()
    await fast_dispatcher()
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    amazon.gateway_script = [
        (429, "THROTTLING_EXCEPTION", {"Retry-After": "1"}),
        (503, "SERVICE_UNAVAILABLE_EXCEPTION", {}),
    ]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    calls = await amazon.wait_events(4)
    assert [c.status for c in calls] == [202, 429, 503, 202]
    await settle(core)
    activity = await core.activity.list(principal, device_id=lamp.id)
    errors = [e.detail["error"] for e in activity.items if e.kind == "delivery"]
    assert errors[:3] == [
        None,
        "Alexa 503 SERVICE_UNAVAILABLE_EXCEPTION",
        "Alexa 429 THROTTLING_EXCEPTION",
    ]


async def test_gateway_down_then_back(
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    fast_dispatcher: FastDispatcher,
    clock: Clock,
) -> None:
    clock.run()
    await fast_dispatcher(retry_base_seconds=0.2, retry_cap_seconds=0.2)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    assert amazon.server is not None
    port = amazon.server.port
    await amazon.server.close()
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")

    async def failed_once() -> bool:
        activity = await core.activity.list(principal, device_id=lamp.id)
        return any(e.kind == "delivery" and e.detail["outcome"] == "retry" for e in activity.items)

    for _ in range(100):
        if await failed_once():
            break
        await asyncio.sleep(0.02)
    activity = await core.activity.list(principal, device_id=lamp.id)
    retry = next(e for e in activity.items if e.kind == "delivery")
    assert retry.detail["error"].startswith("Alexa event gateway unreachable")
    await start_amazon(amazon, port)
    calls = await amazon.wait_events(2)
    assert change(calls[1].json()) == {("Alexa.PowerController", "powerState"): "ON"}


async def test_delivered_after_a_restart(
    settings: Settings, amazon: Amazon, clock: Clock, port: int
) -> None:
    """Queued while the gateway is down, the report survives a restart and goes out after."""
    config = alexa_settings_for(settings, port, amazon)
    first = create_app(config, clock=clock)
    server = TestServer(first, host="127.0.0.1", port=port)
    await server.start_server()
    core: Core = first[CORE_KEY]
    account = await make_account(core, "alice@example.com")
    principal = await core.auth.authenticate(account.key)
    _, alexa_token = await link_oauth_client(core, account)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/alexa/smart_home",
            json=accept_grant(alexa_token),
            headers={"X-StateRelay-Relay-Secret": RELAY_SECRET},
        ) as answer,
    ):
        assert (await answer.json())["event"]["header"]["name"] == "AcceptGrant.Response"
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    assert amazon.server is not None
    gateway_port = amazon.server.port
    await amazon.server.close()
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    for _ in range(200):
        activity = await core.activity.list(principal, device_id=lamp.id)
        if any(e.detail.get("outcome") == "retry" for e in activity.items):
            break
        await asyncio.sleep(0.02)
    assert (await core.outbox.stats()).pending == 1
    await server.close()  # the process stops; the row waits in the database

    await start_amazon(amazon, gateway_port)
    clock.now += 60  # past the retry time
    second = create_app(config, clock=clock)
    server = TestServer(second, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        calls = await amazon.wait_events(2)
        report = calls[1].json()
        assert_valid(report)
        assert report["event"]["endpoint"]["endpointId"] == lamp.id
        assert change(report) == {("Alexa.PowerController", "powerState"): "ON"}
        await settle(second[CORE_KEY])
        stats = await second[CORE_KEY].outbox.stats()
        assert (stats.pending, stats.dead) == (0, 0)
    finally:
        await server.close()


async def test_regional_gateways_and_override(settings: Settings) -> None:
    plain = AlexaSettings()
    assert gateway_url(plain, "NA") == "https://api.amazonalexa.com/v3/events"
    assert gateway_url(plain, "EU") == "https://api.eu.amazonalexa.com/v3/events"
    assert gateway_url(plain, "FE") == "https://api.fe.amazonalexa.com/v3/events"
    moved = AlexaSettings(event_gateway_url="http://127.0.0.1:9/v3/events")
    assert gateway_url(moved, "EU") == "http://127.0.0.1:9/v3/events"


def test_cause_mapping() -> None:
    assert cause_for("alexa", "switch") == "VOICE_INTERACTION"
    assert cause_for("alexa", "dimmer") == "VOICE_INTERACTION"
    assert cause_for("ui", "switch") == "APP_INTERACTION"
    assert cause_for("api", "dimmer") == "APP_INTERACTION"
    assert cause_for("cli", "switch") == "APP_INTERACTION"
    assert cause_for("ui", "contact_sensor") == "APP_INTERACTION"
    assert cause_for("api", "contact_sensor") == "PHYSICAL_INTERACTION"
    assert cause_for("api", "temperature_sensor") == "PHYSICAL_INTERACTION"
    assert cause_for("api", "button") == "PHYSICAL_INTERACTION"
    assert cause_for("ifttt", "switch") == "RULE_TRIGGER"
    assert cause_for("webhook", "motion_sensor") == "RULE_TRIGGER"


async def test_not_configured_instance_refuses_accept_grant(
    browser: Client, token: str, alexa_app: web.Application
) -> None:
    sink = alexa_app[ALEXA_KEY]
    assert await sink.core.alexa.messaging() is not None

    async def never_set() -> None:
        return None

    sink.lwa._credentials = never_set  # as if the messaging credentials were never set
    _, answer = await send(browser, accept_grant(token))
    assert answer["event"]["payload"]["type"] == "ACCEPT_GRANT_FAILED"
    assert "messaging_client_id" in answer["event"]["payload"]["message"]
    assert json.dumps(answer).count("messaging-secret") == 0


def test_store_and_adapter_agree_on_routine_triggers() -> None:
    """The store never merges what the sink reports transition by transition."""
    from staterelay.core.delivery import is_routine_trigger
    from staterelay.core.device_types import DEVICE_TYPES, default_properties
    from staterelay.core.records import Device, PropertyState
    from staterelay.integrations.alexa.endpoints import AlexaEndpoint

    for kind in DEVICE_TYPES.values():
        for options in ({}, {"routine_trigger": True}, {"routine_trigger": False}):
            if options and "routine_trigger" not in kind.options:
                continue
            device = Device(
                seq=1,
                id="dev_x",
                tenant_id="t",
                type=kind.name,
                name="x",
                description="",
                options=options,
                properties={
                    k: PropertyState(v, 0.0) for k, v in default_properties(kind, options).items()
                },
                version=1,
                created_at=0.0,
                updated_at=0.0,
            )
            endpoint = AlexaEndpoint(device)
            for prop in kind.property_names:
                assert is_routine_trigger(kind.name, options, prop) == (
                    prop in endpoint.transitions
                ), (kind.name, options, prop)


async def test_replicas_taking_turns_never_leave_alexa_on_an_old_value(
    alexa_app: web.Application,
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
) -> None:
    """Two processes deliver one lamp's rows in turn (replicas on PostgreSQL do). What one
    process told Alexa is not what Alexa last heard, so its memory never drops a report:
    ON via A, OFF via B, ON via A must reach Alexa as ON, OFF, ON (A once remembered ON)."""
    from staterelay.core.events import OutboxEnqueued
    from staterelay.dispatch import Dispatcher, DispatcherConfig
    from staterelay.integrations.alexa.change_report import ChangeReportSink

    runtime = alexa_app[ALEXA_KEY]
    await alexa_app[DISPATCHER_KEY].stop()
    replicas = [
        ChangeReportSink(
            core, runtime.settings.alexa, runtime.http.shared, runtime.tokens, sole_sender=False
        )
        for _ in range(2)
    ]

    async def deliver_with(sink: ChangeReportSink, n: int) -> None:
        """Run a dispatcher with ``sink`` (one replica) until nothing is pending."""
        dispatcher = Dispatcher(
            core,
            {"alexa": sink},
            config=DispatcherConfig(owner=f"replica-{n}", poll_seconds=0.05, trip_seconds=0.0),
        )
        unsubscribe = core.bus.subscribe(OutboxEnqueued, lambda _event: dispatcher.wake())
        await dispatcher.start()
        try:
            await settle(core)
        finally:
            unsubscribe()
            await dispatcher.stop()

    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await deliver_with(replicas[0], 0)  # its discovery report
    sent = len(amazon.events)
    for n, value in enumerate(("ON", "OFF", "ON", "OFF", "ON")):
        await core.devices.set_state(principal, lamp.id, {"power": value}, source="api")
        await deliver_with(replicas[n % 2], n)
    reports = [c.json() for c in amazon.events[sent:]]
    for report in reports:
        assert_valid(report)
    powers = [change(r)[("Alexa.PowerController", "powerState")] for r in reports]
    assert powers == ["ON", "OFF", "ON", "OFF", "ON"]
