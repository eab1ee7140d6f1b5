"""Report State and Request Sync end to end: a linked user's changes reach the fake Home
Graph as full-trait, schema-valid reports, signed with the service account's JWT, through
refusals, outages, rate limits and timeouts, in order; a 404 ends the link."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.core.records import Principal
from tests.conftest import link_oauth_client, make_account
from tests.google.conftest import (
    REPORT,
    SYNC,
    FakeGoogle,
    FastDispatcher,
    answer,
    assert_states_valid,
    assert_valid,
    eventually,
    google_settings_for,
    settle,
    synced,
)
from tests.oauth.conftest import Client

NOTIFICATIONS = "traits/objectdetection/objectdetection.notifications.schema.json"


async def linked(browser: Client, core: Core, token: str) -> Principal:
    """The user after Google's SYNC (the link exists from then on)."""
    await synced(browser, token)
    return await core.auth.authenticate(token)


def reported(body: dict[str, Any], device_id: str) -> dict[str, Any]:
    """The states a Report State body gives for one device."""
    states: dict[str, Any] = body["payload"]["devices"]["states"][device_id]
    return states


async def test_a_change_reaches_home_graph_as_a_full_trait_report(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Link, SYNC, then an API change: one Report State with every trait's full state,
    valid, for the user's agentUserId, with a token from a verified JWT."""
    principal = await linked(browser, core, token)
    dimmer = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    [sync_call] = await google.wait(SYNC, 1)
    assert sync_call.json() == {"agentUserId": principal.user_id, "async": False}
    await core.devices.set_state(principal, dimmer.id, {"brightness": 35}, source="api")
    calls = await google.wait(REPORT, 1)
    body = calls[0].json()
    assert body["agentUserId"] == principal.user_id
    assert isinstance(body["eventId"], str)
    assert isinstance(body["requestId"], str)
    states = reported(body, dimmer.id)
    assert states == {"on": True, "brightness": 35}
    assert_states_valid(["action.devices.traits.OnOff", "action.devices.traits.Brightness"], states)
    assert google.jwt_errors == []
    [token_call] = google.of("/token")
    assert token_call.status == 200
    assert calls[0].headers["Authorization"] == f"Bearer {google.issued[0]}"
    # The token is kept: more changes, no new token.
    await core.devices.set_state(principal, dimmer.id, {"power": "OFF"}, source="api")
    await google.wait(REPORT, 2)
    await settle(core)
    assert len(google.of("/token")) == 1
    assert reported(google.accepted()[-1], dimmer.id) == {"on": False, "brightness": 35}


async def test_every_device_type_reports_valid_states(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Each sensor's change is a valid report of its trait; a press is an ObjectDetection
    notification valid against Google's schema."""
    principal = await linked(browser, core, token)
    made = {}
    for kind in ("switch", "contact_sensor", "motion_sensor", "temperature_sensor", "button"):
        made[kind] = await core.devices.create(principal, type=kind, name=kind, source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    await core.devices.set_state(principal, made["switch"].id, {"power": "ON"}, source="api")
    await core.devices.set_state(
        principal, made["contact_sensor"].id, {"detection": "DETECTED"}, source="api"
    )
    await core.devices.set_state(
        principal, made["motion_sensor"].id, {"detection": "DETECTED"}, source="api"
    )
    await core.devices.set_state(
        principal, made["temperature_sensor"].id, {"temperature": 21.5}, source="api"
    )
    await core.devices.press(principal, made["button"].id, source="api")
    await google.wait(REPORT, 5)
    await settle(core)
    by_device: dict[str, dict[str, Any]] = {}
    for body in google.accepted():
        for device_id, states in body["payload"]["devices"].get("states", {}).items():
            by_device[device_id] = states
        for device_id, note in body["payload"]["devices"].get("notifications", {}).items():
            assert_valid(NOTIFICATIONS, note)
            assert device_id == made["button"].id
            assert note["ObjectDetection"]["objects"] == {"unclassified": 1}
    assert by_device[made["switch"].id] == {"on": True}
    assert by_device[made["contact_sensor"].id] == {"openPercent": 100}
    assert by_device[made["motion_sensor"].id] == {"occupancy": "OCCUPIED"}
    assert by_device[made["temperature_sensor"].id] == {
        "temperatureAmbientCelsius": 21.5,
        "temperatureSetpointCelsius": 21.5,
    }
    assert_states_valid(
        ["action.devices.traits.TemperatureControl"], by_device[made["temperature_sensor"].id]
    )


async def test_request_sync_on_add_rename_room_and_delete_only(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """A Request Sync for a new device, a rename, a room change and a delete; none for a
    description."""
    principal = await linked(browser, core, token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    await core.devices.update(
        principal, lamp.id, fields={"description": "by the door"}, source="api"
    )
    await settle(core)
    assert len(google.of(SYNC)) == 1
    await core.devices.update(principal, lamp.id, fields={"name": "Hall lamp"}, source="api")
    await google.wait(SYNC, 2)
    await core.devices.update(principal, lamp.id, fields={"room": "Hall"}, source="api")
    await google.wait(SYNC, 3)
    await core.devices.delete(principal, lamp.id, source="api")
    await google.wait(SYNC, 4)
    await settle(core)
    assert len(google.of(SYNC)) == 4
    assert google.of(REPORT) == []


async def test_nothing_is_sent_for_households_without_a_link(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Linked through OAuth but no SYNC yet: not a Google Home link, nothing is sent."""
    principal = await core.auth.authenticate(token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert google.calls == []


async def test_a_404_on_request_sync_ends_the_link_and_sending(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Google no longer knows the user: the link ends, queued rows are dropped, and later
    changes are not sent."""
    principal = await linked(browser, core, token)
    google.script[SYNC] = [answer(404)]
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)

    async def ended() -> bool:
        return not await core.integrations.list(principal.tenant_id, "google", "link")

    await eventually(ended)
    await settle(core)
    gone = await core.integrations.get(principal.tenant_id, "google", "gone", principal.user_id)
    assert gone is not None
    assert "404" in gone.data["reason"]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert google.of(REPORT) == []
    assert len(google.of(SYNC)) == 1
    # Google's next SYNC links the user again.
    await synced(browser, token)
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    await google.wait(REPORT, 1)


async def test_a_404_on_a_report_asks_for_a_sync_and_tries_again(
    browser: Client,
    core: Core,
    token: str,
    google: FakeGoogle,
    fast_dispatcher: FastDispatcher,
    clock: Any,
) -> None:
    """Report State 404 (the device not synced yet): a Request Sync, then the report again."""
    clock.run()
    await fast_dispatcher()
    principal = await linked(browser, core, token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.script[REPORT] = [answer(404)]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await google.wait(REPORT, 2)
    await settle(core)
    assert [c.status for c in google.of(REPORT)] == [404, 200]
    assert len(google.of(SYNC)) == 2
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id)


async def test_outages_rate_limits_and_timeouts_keep_the_order(
    browser: Client,
    core: Core,
    token: str,
    google: FakeGoogle,
    fast_dispatcher: FastDispatcher,
    clock: Any,
) -> None:
    """A 503 window, a 429 with Retry-After and a timeout: every trigger transition of a
    motion sensor arrives, in order, none lost or merged."""
    clock.run()
    await fast_dispatcher()
    google.hang_seconds = 6.0  # longer than the sink waits for a report
    principal = await linked(browser, core, token)
    motion = await core.devices.create(principal, type="motion_sensor", name="Hall", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.script[REPORT] = [
        answer(503),
        answer(503),
        answer(429, {"Retry-After": "0"}),
        answer(0),  # hangs: the sink times out and tries again
        answer(500),
    ]
    values = ["DETECTED", "NOT_DETECTED", "DETECTED", "NOT_DETECTED"]
    for value in values:
        await core.devices.set_state(principal, motion.id, {"detection": value}, source="api")
    await google.wait(REPORT, 5 + len(values), timeout=30.0)
    await settle(core)
    occupancy = [reported(body, motion.id)["occupancy"] for body in google.accepted()]
    assert occupancy == ["OCCUPIED", "UNOCCUPIED", "OCCUPIED", "UNOCCUPIED"]


async def test_ordinary_changes_coalesce_into_the_newest_state(
    browser: Client,
    core: Core,
    token: str,
    google: FakeGoogle,
    fast_dispatcher: FastDispatcher,
    clock: Any,
) -> None:
    """While Home Graph is down, a burst of dimmer changes waits; once it is back, fewer
    reports carry the newest state, and the last one reported is the newest."""
    clock.run()
    await fast_dispatcher()
    principal = await linked(browser, core, token)
    dimmer = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.script[REPORT] = [answer(503)] * 3
    for level in range(10, 60, 5):
        await core.devices.set_state(principal, dimmer.id, {"brightness": level}, source="api")
    await settle(core)
    accepted = google.accepted()
    assert 1 <= len(accepted) < 10
    assert reported(accepted[-1], dimmer.id) == {"on": True, "brightness": 55}


async def test_a_refused_token_is_made_again_once(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Home Graph says 401: a new JWT, a new token, the report goes through."""
    principal = await linked(browser, core, token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.issued.clear()  # Google forgot the token it issued
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await google.wait(REPORT, 2)
    await settle(core)
    assert [c.status for c in google.of(REPORT)] == [401, 200]
    assert len(google.of("/token")) == 2
    assert google.jwt_errors == []


async def test_a_bad_payload_is_final_and_counted(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """A 400 is not tried again; the metrics count it as failed."""
    principal = await linked(browser, core, token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.script[REPORT] = [answer(400)]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await google.wait(REPORT, 1)
    await settle(core)
    await asyncio.sleep(0.2)
    assert len(google.of(REPORT)) == 1
    metrics = await browser.get("/metrics")
    text = await metrics.text()
    assert 'google_report_state_total{outcome="failed"} 1.0' in text
    assert 'google_request_sync_total{outcome="accepted"} 1.0' in text
    assert 'google_report_state_total{outcome="gone"} 0.0' in text


async def test_delivered_after_a_restart(
    settings: Any, google: FakeGoogle, private_key: Any, clock: Any, port: int
) -> None:
    """Queued while Home Graph fails, the report survives a restart and goes out after,
    with a token the new process makes for itself."""
    config = google_settings_for(settings, port, google, private_key)
    first = create_app(config, clock=clock)
    server = TestServer(first, host="127.0.0.1", port=port)
    await server.start_server()
    core: Core = first[CORE_KEY]
    account = await make_account(core, "alice@example.com")
    _, google_token = await link_oauth_client(core, account, client_id="google-home")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/google/fulfillment",
            json={"requestId": "1", "inputs": [{"intent": "action.devices.SYNC"}]},
            headers={"Authorization": f"Bearer {google_token}"},
        ) as synced_answer,
    ):
        assert (await synced_answer.json())["payload"]["agentUserId"] == account.user_id
    principal = await core.auth.authenticate(google_token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.script[REPORT] = [answer(503)]
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await google.wait(REPORT, 1)
    for _ in range(200):
        activity = await core.activity.list(principal, device_id=lamp.id)
        if any(e.detail.get("outcome") == "retry" for e in activity.items):
            break
        await asyncio.sleep(0.02)
    assert (await core.outbox.stats()).pending == 1
    await server.close()  # the process stops; the row waits in the database

    clock.now += 60  # past the retry time
    second = create_app(config, clock=clock)
    server = TestServer(second, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        calls = await google.wait(REPORT, 2)
        assert calls[1].status == 200
        assert reported(calls[1].json(), lamp.id) == {"on": True}
        assert len(google.of("/token")) == 2
        assert google.jwt_errors == []
        await settle(second[CORE_KEY])
        stats = await second[CORE_KEY].outbox.stats()
        assert (stats.pending, stats.dead) == (0, 0)
    finally:
        await server.close()
