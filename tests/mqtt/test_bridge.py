"""The bridge against a real Mosquitto: state out, commands in through core, availability,
errors reported, presses and transitions in order through a broker restart, status, metrics,
tenant isolation, and nothing at all without a URL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.app.registry import BUILTIN, delivery_policies
from staterelay.integrations.mqtt.dashboard import BRIDGE_KEY
from staterelay.settings import MqttSettings, Settings, SettingsError, load_settings
from tests.conftest import make_account
from tests.mqtt.broker import Broker, Subscriber, subscriber
from tests.mqtt.conftest import Client, Setup, mqtt_app, wait_for, with_mqtt

BASE = "staterelay"
ORIGIN = "http://localhost:8080"


def power(recorder: Subscriber, device_id: str) -> str | None:
    """The power in the newest state message of ``device_id`` a subscriber got."""
    found = recorder.on(f"{BASE}/{device_id}/state")
    return found[-1].json()["state"].get("power") if found else None


async def api_state(setup: Setup, device_id: str) -> dict[str, Any]:
    """The device's state object as the REST API gives it."""
    response = await setup.client.get(
        f"/api/v1/devices/{device_id}/state", headers=setup.alice.headers
    )
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_state_is_retained_json_like_the_api_and_availability_is_online(
    setup: Setup,
) -> None:
    """The status topic says online (retained); each change from the API reaches a
    subscriber as the REST API's state object, retained for whoever subscribes later."""
    device_id = await setup.device("switch", "Lamp")
    async with subscriber(setup.broker, f"{BASE}/#") as recorder:
        await recorder.wait(lambda: recorder.on(f"{BASE}/status"))
        assert recorder.on(f"{BASE}/status")[-1].payload == b"online"
        assert recorder.on(f"{BASE}/status")[-1].retain
        changed = await setup.client.put(
            f"/api/v1/devices/{device_id}/state",
            json={"power": "ON"},
            headers=setup.alice.headers,
        )
        assert changed.status == 200
        topic = f"{BASE}/{device_id}/state"
        await recorder.wait(lambda: recorder.on(topic)[-1].json()["state"]["power"] == "ON")
        assert recorder.on(topic)[-1].json() == await api_state(setup, device_id)
        assert not [m for m in recorder.messages if "/set" in m.topic]
    async with subscriber(setup.broker, f"{BASE}/{device_id}/state") as later:
        await later.wait(lambda: later.messages)
        assert later.messages[0].retain
        assert later.messages[0].json()["state"] == {"power": "ON"}


async def test_home_assistant_commands_flip_devices_through_core(setup: Setup) -> None:
    """Plain values on ``set/<property>`` (as Home Assistant sends them) and JSON on ``set``
    change the device through core: the API and an open WebSocket see it, the activity log
    says ``mqtt``, and the new state comes back on the state topic only."""
    switch = await setup.device("switch", "Fan")
    dimmer = await setup.device("dimmer", "Lamp")
    ws = await setup.client.ws_connect(
        "/dashboard/ws", headers={**setup.alice.headers, "Origin": ORIGIN}
    )
    assert (await ws.receive_json(timeout=2))["type"] == "hello"
    async with subscriber(setup.broker, f"{BASE}/#") as ha:
        await ha.publish(f"{BASE}/{switch}/set/power", "ON")
        message = await ws.receive_json(timeout=5)
        assert message["type"] == "device.state"
        assert message["device"]["id"] == switch
        assert message["device"]["state"] == {"power": "ON"}
        assert (await api_state(setup, switch))["state"] == {"power": "ON"}
        await ha.publish(f"{BASE}/{dimmer}/set/brightness", "40")
        await ha.wait(
            lambda: (
                ha.on(f"{BASE}/{dimmer}/state")
                and ha.on(f"{BASE}/{dimmer}/state")[-1].json()["state"]["brightness"] == 40
            )
        )
        assert (await api_state(setup, dimmer))["state"] == {"power": "ON", "brightness": 40}
        await ha.publish(f"{BASE}/{switch}/set", orjson.dumps({"power": "OFF"}))
        await ha.wait(lambda: ha.on(f"{BASE}/{switch}/state")[-1].json()["state"]["power"] == "OFF")
        await ws.close()
        activity = await setup.client.get(
            f"/api/v1/activity?device_id={switch}", headers=setup.alice.headers
        )
        entries = (await activity.json())["items"]
        assert {entry["source"] for entry in entries if entry["kind"] == "state"} == {"mqtt"}
        # What the bridge published went to state topics only: nothing to echo as a command.
        # (the only messages on command topics are the three this test sent)
        published = [m.topic for m in ha.messages if m.topic.startswith(f"{BASE}/dev_")]
        assert {topic.rsplit("/", 1)[-1] for topic in published} <= {
            "state",
            "power",
            "set",
            "brightness",
        }
        assert len([t for t in ha.messages if t.topic.endswith("/set") or "/set/" in t.topic]) == 3
    assert setup.bridge.status.commands["applied"] == 3
    assert setup.bridge.status.last_command_device == switch


async def test_bad_payloads_change_nothing_and_are_reported(
    setup: Setup, aiohttp_client: Callable[..., Any]
) -> None:
    """Not JSON, not an object, an unknown property, a value out of range, not UTF-8,
    another household's device, a press of a dimmer: nothing changes, each is reported on
    the error topic, and the bridge keeps working."""
    device_id = await setup.device("dimmer", "Lamp")
    core = setup.client.app[CORE_KEY]
    mallory = await make_account(core, "mallory@example.net", new_tenant=True)
    response = await setup.client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Theirs"}, headers=mallory.headers
    )
    theirs = (await response.json())["id"]
    before = await api_state(setup, device_id)
    bad = [
        (f"{BASE}/{device_id}/set", b"{not json"),
        (f"{BASE}/{device_id}/set", b"[1, 2]"),
        (f"{BASE}/{device_id}/set", b'{"colour": "red"}'),
        (f"{BASE}/{device_id}/set/brightness", b"250"),
        (f"{BASE}/{device_id}/set/power", b"\xff\xfe"),
        (f"{BASE}/{theirs}/set/power", b"ON"),
        (f"{BASE}/{device_id}/press", b""),
    ]
    async with subscriber(setup.broker, f"{BASE}/error") as recorder:
        for topic, payload in bad:
            await recorder.publish(topic, payload)
        await recorder.wait(lambda: len(recorder.messages) >= len(bad))
        reports = [m.json() for m in recorder.messages]
        assert [r["topic"] for r in reports] == [t for t, _ in bad]
        assert all(r["error"] and r["device_id"] in r["topic"] for r in reports)
        assert all(not m.retain for m in recorder.messages)
    assert await api_state(setup, device_id) == before
    theirs_state = await setup.client.get(
        f"/api/v1/devices/{theirs}/state", headers=mallory.headers
    )
    assert (await theirs_state.json())["state"] == {"power": "OFF"}
    assert setup.bridge.status.commands["refused"] == len(bad)
    async with subscriber(setup.broker, f"{BASE}/{device_id}/state") as recorder:
        await recorder.publish(f"{BASE}/{device_id}/set/power", "ON")
        await recorder.wait(lambda: recorder.messages[-1].json()["state"]["power"] == "ON")


async def test_a_retained_command_is_not_replayed_on_reconnect(setup: Setup) -> None:
    """A command someone published retained is not applied again each time the bridge
    (re)subscribes: the broker's replay is ignored and reported."""
    device_id = await setup.device("switch", "Heater")
    async with subscriber(setup.broker, f"{BASE}/error", f"{BASE}/{device_id}/state") as rec:
        await rec.publish(f"{BASE}/{device_id}/set/power", "ON", retain=True)
        await rec.wait(lambda: power(rec, device_id) == "ON")
        off = await setup.client.put(
            f"/api/v1/devices/{device_id}/state", json={"power": "OFF"}, headers=setup.alice.headers
        )
        assert off.status == 200
        # A client with the bridge's id takes its place; the bridge reconnects and
        # resubscribes, and the broker replays the retained command to it.
        connections = setup.bridge.status.connected_at
        async with aiomqtt.Client(
            "127.0.0.1", setup.broker.port, identifier="staterelay-staterelay"
        ):
            await wait_for(lambda: not setup.bridge.status.connected)
        await wait_for(lambda: setup.bridge.status.connected_at != connections)
        await rec.wait(lambda: rec.on(f"{BASE}/error"))
        assert "retained" in rec.on(f"{BASE}/error")[-1].json()["error"]
    assert (await api_state(setup, device_id))["state"] == {"power": "OFF"}
    assert setup.bridge.status.commands["ignored"] >= 1


async def test_presses_arrive_once_in_order_across_a_broker_restart(setup: Setup) -> None:
    """Presses go through the outbox: with the broker killed mid-stream and started again,
    every press arrives, once, in order; the state is republished on reconnect."""
    button = await setup.device("button", "Doorbell")
    topic = f"{BASE}/{button}/event"
    pressed: list[str] = []

    async def press(count: int) -> None:
        for _ in range(count):
            response = await setup.client.post(
                f"/api/v1/devices/{button}/press", headers=setup.alice.headers
            )
            assert response.status == 200
            pressed.append((await response.json())["state"]["last_pressed_at"])

    async with subscriber(setup.broker, topic) as first:
        await press(3)
        await first.wait(lambda: len(first.messages) == 3)
    received = [m.json() for m in first.messages]
    setup.broker.kill()
    await press(4)  # while the broker is down
    await wait_for(lambda: not setup.bridge.status.connected)
    setup.broker.start()
    async with subscriber(setup.broker, topic, f"{BASE}/{button}/state") as second:
        await wait_for(lambda: setup.bridge.status.connected)
        await press(3)
        await second.wait(lambda: len(second.on(topic)) >= 7, seconds=30)
        await asyncio.sleep(0.3)
        received += [m.json() for m in second.on(topic)]
        assert second.on(f"{BASE}/{button}/state")
    assert [event["at"] for event in received] == pressed
    assert len({event["id"] for event in received}) == len(pressed) == 10
    assert {event["event_type"] for event in received} == {"press"}
    assert all(not m.retain for m in second.on(topic))


async def test_routine_trigger_transitions_are_events_and_plain_changes_are_not(
    setup: Setup,
) -> None:
    """A contact sensor's transitions and a trigger switch's power go out as events, in
    order; a plain switch's power only as state."""
    sensor = await setup.device("contact_sensor", "Door")
    trigger = await setup.device("switch", "Scene", options={"routine_trigger": True})
    plain = await setup.device("switch", "Fan")
    async with subscriber(setup.broker, f"{BASE}/+/event") as recorder:
        for value in ("DETECTED", "NOT_DETECTED", "DETECTED"):
            response = await setup.client.put(
                f"/api/v1/devices/{sensor}/state",
                json={"detection": value},
                headers=setup.alice.headers,
            )
            assert response.status == 200
        for device_id in (trigger, plain):
            await setup.client.put(
                f"/api/v1/devices/{device_id}/state",
                json={"power": "ON"},
                headers=setup.alice.headers,
            )
        await recorder.wait(lambda: len(recorder.messages) >= 4)
        await asyncio.sleep(0.3)
        events = [(m.topic.split("/")[1], m.json()) for m in recorder.messages]
    # In order per device (each device's events are one stream); none for the plain switch.
    assert [(e["property"], e["new"]) for device, e in events if device == sensor] == [
        ("detection", "DETECTED"),
        ("detection", "NOT_DETECTED"),
        ("detection", "DETECTED"),
    ]
    assert [(e["property"], e["new"]) for device, e in events if device == trigger] == [
        ("power", "ON")
    ]
    assert {device for device, _ in events} == {sensor, trigger}
    assert {e["event_type"] for _, e in events} == {"transition"}


async def test_status_api_card_and_metrics(setup: Setup) -> None:
    """``/api/v1/integrations/mqtt`` answers the served household (connected, discovery,
    last command) and no other; /metrics has every series from 0."""
    device_id = await setup.device("switch", "Lamp")
    async with subscriber(setup.broker, f"{BASE}/{device_id}/state") as recorder:
        await recorder.publish(f"{BASE}/{device_id}/set/power", "ON")
        await recorder.wait(lambda: recorder.messages[-1].json()["state"]["power"] == "ON")
    response = await setup.client.get("/api/v1/integrations/mqtt", headers=setup.alice.headers)
    assert response.status == 200
    status = await response.json()
    assert status["connected"] is True
    assert status["leader"] is True
    assert status["broker"] == setup.broker.url.replace("mqtt://", "mqtt://")
    assert status["discovery_published_at"] is not None
    assert status["last_command_device"] == device_id
    assert status["commands"]["applied"] == 1
    anonymous = await setup.client.get("/api/v1/integrations/mqtt")
    assert anonymous.status == 401
    assert anonymous.content_type == "application/problem+json"
    mallory = await make_account(setup.client.app[CORE_KEY], "mallory@example.net", new_tenant=True)
    other = await setup.client.get("/api/v1/integrations/mqtt", headers=mallory.headers)
    assert other.status == 404
    assert other.content_type == "application/problem+json"
    metrics = await (await setup.client.get("/metrics")).text()
    for line in (
        'mqtt_messages_published_total{kind="state"}',
        'mqtt_messages_published_total{kind="event"} 0.0',
        'mqtt_commands_total{outcome="applied"} 1.0',
        'mqtt_commands_total{outcome="refused"} 0.0',
        'mqtt_errors_total{kind="connection"} 0.0',
        "mqtt_connected 1.0",
        "mqtt_leader 1.0",
    ):
        assert line in metrics


async def test_the_bridge_stops_offline_and_an_ambiguous_household_waits(
    aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker
) -> None:
    """With two households and none named, the bridge does not connect and says why;
    naming one (by a user's email) lets it serve that one."""
    ambiguous = dataclasses.replace(with_mqtt(settings, broker), mqtt=MqttSettings(url=broker.url))
    client: Client = await aiohttp_client(mqtt_app(ambiguous))
    core = client.app[CORE_KEY]
    await make_account(core, "alice@example.com")
    await make_account(core, "bob@example.net", new_tenant=True)
    bridge = client.app[BRIDGE_KEY]
    await wait_for(lambda: bridge.served_problem and "households" in bridge.served_problem)
    await asyncio.sleep(0.2)
    assert not bridge.status.connected


async def test_the_will_says_offline_when_the_bridge_stops(
    aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker
) -> None:
    """A bridge that stops leaves ``offline`` on its status topic."""
    client: Client = await aiohttp_client(mqtt_app(with_mqtt(settings, broker)))
    await make_account(client.app[CORE_KEY], "alice@example.com")
    bridge = client.app[BRIDGE_KEY]
    await wait_for(lambda: bridge.status.connected)
    await client.close()
    async with subscriber(broker, f"{BASE}/status") as recorder:
        await recorder.wait(lambda: recorder.messages)
        assert recorder.messages[-1].payload == b"offline"


async def test_nothing_changes_without_a_url(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """No URL: no bridge, card, route, metrics or outbox rows."""
    assert settings.mqtt.url is None
    assert not [p for p in delivery_policies(settings) if p.sink == "mqtt"]
    app = create_app(settings)
    assert BRIDGE_KEY not in app
    client: Client = await aiohttp_client(app)
    account = await make_account(client.app[CORE_KEY], "alice@example.com")
    response = await client.get("/api/v1/integrations/mqtt", headers=account.headers)
    assert response.status == 404
    metrics = await (await client.get("/metrics")).text()
    assert "mqtt_" not in metrics
    device = await client.post(
        "/api/v1/devices", json={"type": "button", "name": "Bell"}, headers=account.headers
    )
    await client.post(
        f"/api/v1/devices/{(await device.json())['id']}/press", headers=account.headers
    )
    stats = await client.app[CORE_KEY].outbox.stats()
    assert stats.pending == 0
    assert any(i.name == "mqtt" for i in BUILTIN)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("url", "http://broker:1883"),
        ("url", "mqtt://"),
        ("url", "mqtt://broker:99999"),
        ("base_topic", "a/#"),
        ("base_topic", ""),
        ("discovery_prefix", "home assistant"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Any, key: str, value: str) -> None:
    """A URL that is not mqtt(s)://host[:port] and topics with wildcards are refused."""
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path, environ={f"STATERELAY_MQTT_{key.upper()}": value})
    assert f"mqtt.{key}" in str(caught.value)


def test_the_environment_sets_the_bridge(tmp_path: Any) -> None:
    """``STATERELAY_MQTT_URL`` alone turns it on, with the documented defaults."""
    loaded = load_settings(
        data_dir=tmp_path, environ={"STATERELAY_MQTT_URL": "mqtts://broker.lan:8883"}
    )
    assert loaded.mqtt == MqttSettings(url="mqtts://broker.lan:8883")
    assert loaded.mqtt.base_topic == "staterelay"
    assert loaded.mqtt.discovery_prefix == "homeassistant"


_ = (aiohttp, web)


async def test_a_dead_or_silent_broker_never_blocks_requests(
    aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker
) -> None:
    """With the broker's port closed, or a listener that accepts and never answers (the
    bridge still waits for its CONNACK), the app starts and changes and presses are
    answered; the status says the bridge is not connected."""
    accepted: list[asyncio.StreamWriter] = []

    def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answered; closed at the end

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    broker.kill()
    try:
        for n, url in enumerate((broker.url, f"mqtt://127.0.0.1:{silent_port}")):
            email = f"a{n}@example.com"
            configured = dataclasses.replace(
                with_mqtt(settings, broker), mqtt=MqttSettings(url=url, household=email)
            )
            client: Client = await aiohttp_client(mqtt_app(configured))
            account = await make_account(client.app[CORE_KEY], email, new_tenant=n > 0)
            bridge = client.app[BRIDGE_KEY]
            await wait_for(lambda b=bridge: b.leading)
            created = await client.post(
                "/api/v1/devices", json={"type": "button", "name": "Bell"}, headers=account.headers
            )
            device_id = (await created.json())["id"]
            for _ in range(5):
                pressed = await client.post(
                    f"/api/v1/devices/{device_id}/press", headers=account.headers
                )
                assert pressed.status == 200
            if n > 0:  # the connection attempt to the silent listener has not ended yet
                assert bridge.status.errors["connection"] == 0
            status = await (
                await client.get("/api/v1/integrations/mqtt", headers=account.headers)
            ).json()
            assert status["connected"] is False
            assert status["leader"] is True
            await client.close()
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
