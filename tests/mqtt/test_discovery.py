"""Home Assistant discovery: each device type's configs, key by key against the documented
schema of its platform, with templates that read the state topic; renames, room changes,
deletes and Home Assistant coming online."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
import jsonschema
import orjson

from staterelay.app.appkeys import CORE_KEY
from staterelay.settings import Settings
from tests.conftest import make_account
from tests.mqtt.broker import Broker, Subscriber, subscriber
from tests.mqtt.conftest import HOUSEHOLD, Setup, mqtt_app, with_mqtt

PREFIX = "homeassistant"
BASE = "staterelay"

TEMPLATE = {"type": "string", "minLength": 1}
TOPIC = {"type": "string", "pattern": r"^[^#+]+$"}
DEVICE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["identifiers"],
    "properties": {
        "identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "connections": {"type": "array"},
        "name": {"type": "string"},
        "manufacturer": {"type": "string"},
        "model": {"type": "string"},
        "sw_version": {"type": "string"},
        "hw_version": {"type": "string"},
        "serial_number": {"type": "string"},
        "suggested_area": {"type": "string"},
        "configuration_url": {"type": "string", "pattern": r"^https?://"},
        "via_device": {"type": "string"},
    },
}
ORIGIN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "sw_version": {"type": "string"},
        "support_url": {"type": "string"},
    },
}
AVAILABILITY = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["topic"],
        "properties": {
            "topic": TOPIC,
            "payload_available": {"type": "string"},
            "payload_not_available": {"type": "string"},
            "value_template": TEMPLATE,
        },
    },
}
ENTITY = {
    "name": {"type": ["string", "null"]},
    "unique_id": {"type": "string"},
    "object_id": {"type": "string"},
    "device": DEVICE,
    "origin": ORIGIN,
    "availability": AVAILABILITY,
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "qos": {"enum": [0, 1, 2]},
    "icon": {"type": "string"},
    "enabled_by_default": {"type": "boolean"},
    "json_attributes_topic": TOPIC,
    "json_attributes_template": TEMPLATE,
}


def platform(required: list[str], **keys: Any) -> dict[str, Any]:
    """A platform's discovery schema: the entity keys every platform has, plus its own."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["unique_id", "device", *required],
        "properties": {**ENTITY, **keys},
    }


# From the platforms' documentation (switch.mqtt, light.mqtt default schema,
# binary_sensor.mqtt, sensor.mqtt, event.mqtt, device_trigger.mqtt).
SCHEMAS: dict[str, dict[str, Any]] = {
    "switch": platform(
        ["command_topic"],
        command_topic=TOPIC,
        state_topic=TOPIC,
        value_template=TEMPLATE,
        payload_on={"type": "string"},
        payload_off={"type": "string"},
        state_on={"type": "string"},
        state_off={"type": "string"},
        optimistic={"type": "boolean"},
        retain={"type": "boolean"},
        device_class={"enum": ["outlet", "switch"]},
    ),
    "light": platform(
        ["command_topic"],
        schema={"enum": ["default", "basic"]},
        command_topic=TOPIC,
        state_topic=TOPIC,
        state_value_template=TEMPLATE,
        payload_on={"type": "string"},
        payload_off={"type": "string"},
        brightness_command_topic=TOPIC,
        brightness_command_template=TEMPLATE,
        brightness_state_topic=TOPIC,
        brightness_value_template=TEMPLATE,
        brightness_scale={"type": "integer", "minimum": 1},
        on_command_type={"enum": ["first", "last", "brightness"]},
        optimistic={"type": "boolean"},
        retain={"type": "boolean"},
    ),
    "binary_sensor": platform(
        ["state_topic"],
        state_topic=TOPIC,
        value_template=TEMPLATE,
        payload_on={"type": "string"},
        payload_off={"type": "string"},
        device_class={"enum": ["door", "opening", "window", "motion", "occupancy", "presence"]},
        expire_after={"type": "integer"},
        force_update={"type": "boolean"},
        off_delay={"type": "integer"},
    ),
    "sensor": platform(
        ["state_topic"],
        state_topic=TOPIC,
        value_template=TEMPLATE,
        device_class={"const": "temperature"},
        state_class={"enum": ["measurement", "total", "total_increasing"]},
        unit_of_measurement={"enum": ["°C", "°F"]},
        suggested_display_precision={"type": "integer", "minimum": 0},
        expire_after={"type": "integer"},
        force_update={"type": "boolean"},
    ),
    "event": platform(
        ["state_topic", "event_types"],
        state_topic=TOPIC,
        event_types={"type": "array", "items": {"type": "string"}, "minItems": 1},
        device_class={"enum": ["button", "doorbell", "motion"]},
        value_template=TEMPLATE,
    ),
    "device_automation": {
        "type": "object",
        "additionalProperties": False,
        "required": ["automation_type", "topic", "type", "subtype", "device"],
        "properties": {
            "automation_type": {"const": "trigger"},
            "topic": TOPIC,
            "type": {"type": "string"},
            "subtype": {"type": "string"},
            "payload": {"type": "string"},
            "value_template": TEMPLATE,
            "qos": {"enum": [0, 1, 2]},
            "device": DEVICE,
        },
    },
}


def render(template: str, message: Any) -> str:
    """A value template rendered as Home Assistant does, against a JSON payload."""
    environment = jinja2.Environment(autoescape=False)
    return environment.from_string(template).render(value_json=message).strip()


def configs_of(recorder: Subscriber, device_id: str) -> dict[str, Any]:
    """The newest non-empty discovery config per topic of ``device_id``."""
    found: dict[str, Any] = {}
    for message in recorder.messages:
        parts = message.topic.split("/")
        if len(parts) == 5 and parts[0] == PREFIX and parts[2] == device_id:
            found[message.topic] = message.json() if message.payload else None
    return found


async def test_every_device_type_is_discovered_with_its_platform_schema(setup: Setup) -> None:
    """One config per entity, each valid for its platform, with unique ids, the device block
    (model = type, manufacturer, version, page, room) and availability; each template reads
    the state topic's JSON to the value Home Assistant expects."""
    async with subscriber(setup.broker, f"{PREFIX}/#", f"{BASE}/+/state") as recorder:
        ids = {
            kind: await setup.device(kind, f"My {kind}", room="Kitchen")
            for kind in (
                "switch",
                "dimmer",
                "contact_sensor",
                "motion_sensor",
                "temperature_sensor",
                "button",
            )
        }
        expected = {
            "switch": ["switch/{id}/power"],
            "dimmer": ["light/{id}/light"],
            "contact_sensor": ["binary_sensor/{id}/contact"],
            "motion_sensor": ["binary_sensor/{id}/motion"],
            "temperature_sensor": ["sensor/{id}/temperature"],
            "button": ["event/{id}/press", "device_automation/{id}/press"],
        }
        for kind, device_id in ids.items():
            topics = {f"{PREFIX}/{t.format(id=device_id)}/config" for t in expected[kind]}
            await recorder.wait(lambda t=topics, d=device_id: set(configs_of(recorder, d)) >= t)
            await recorder.wait(lambda d=device_id: recorder.on(f"{BASE}/{d}/state"))
            assert set(configs_of(recorder, device_id)) == topics
        for kind, device_id in ids.items():
            state = recorder.on(f"{BASE}/{device_id}/state")[-1].json()
            for topic, config in configs_of(recorder, device_id).items():
                component = topic.split("/")[1]
                jsonschema.validate(config, SCHEMAS[component])
                device = config["device"]
                assert device["identifiers"] == [f"staterelay_{device_id}"]
                assert device["name"] == f"My {kind}"
                assert device["model"] == kind
                assert device["manufacturer"] == "StateRelay"
                assert device["suggested_area"] == "Kitchen"
                assert device["configuration_url"].endswith(f"/dashboard/devices/{device_id}")
                if component != "device_automation":
                    assert config["unique_id"] == f"staterelay_{device_id}_{topic.split('/')[3]}"
                    assert config["availability"] == [{"topic": f"{BASE}/status"}]
                    assert config["name"] is None
                if kind == "switch":
                    assert config["command_topic"] == f"{BASE}/{device_id}/set/power"
                    assert render(config["value_template"], state) == config["payload_off"]
                elif kind == "dimmer":
                    assert config["brightness_scale"] == 100
                    assert render(config["state_value_template"], state) == "OFF"
                    assert render(config["brightness_value_template"], state) == "100"
                elif kind in ("contact_sensor", "motion_sensor"):
                    want = "door" if kind == "contact_sensor" else "motion"
                    assert config["device_class"] == want
                    assert render(config["value_template"], state) == config["payload_off"]
                elif kind == "temperature_sensor":
                    assert config["unit_of_measurement"] == "°C"
                    assert float(render(config["value_template"], state)) == 20.0
                elif component == "event":
                    assert config["event_types"] == ["press"]
                    assert config["state_topic"] == f"{BASE}/{device_id}/event"
                else:
                    assert config["topic"] == f"{BASE}/{device_id}/event"
                    assert render(config["value_template"], {"event_type": "press"}) == "press"
                    assert config["payload"] == "press"


async def test_a_fahrenheit_sensor_reads_in_fahrenheit(setup: Setup) -> None:
    """The unit follows the sensor's scale, and a reading sent in the other scale is shown
    converted."""
    async with subscriber(setup.broker, f"{PREFIX}/#", f"{BASE}/+/state") as recorder:
        device_id = await setup.device(
            "temperature_sensor", "Porch", options={"scale": "FAHRENHEIT"}
        )
        topic = f"{PREFIX}/sensor/{device_id}/temperature/config"
        await recorder.wait(lambda: recorder.on(topic))
        config = recorder.on(topic)[-1].json()
        assert config["unit_of_measurement"] == "°F"
        changed = await setup.client.put(
            f"/api/v1/devices/{device_id}/state",
            json={"temperature": {"value": 20, "scale": "CELSIUS"}},
            headers=setup.alice.headers,
        )
        assert changed.status == 200, await changed.text()
        state_topic = f"{BASE}/{device_id}/state"
        await recorder.wait(lambda: len(recorder.on(state_topic)) >= 2)
        state = recorder.on(state_topic)[-1].json()
        assert float(render(config["value_template"], state)) == 68.0


async def test_rename_and_room_change_update_the_config_and_delete_removes_it(
    setup: Setup,
) -> None:
    """A rename and a room change republish the config under the same unique id (and the
    device index); a delete publishes empty retained configs and clears the state, so a
    newcomer finds nothing."""
    index = f"{BASE}/devices"

    def listed() -> list[Any]:
        return [(d["id"], d["name"], d["room"]) for d in recorder.on(index)[-1].json()]

    async with subscriber(setup.broker, f"{PREFIX}/#", f"{BASE}/+/state", index) as recorder:
        device_id = await setup.device("switch", "Fan", room="Office")
        topic = f"{PREFIX}/switch/{device_id}/power/config"
        await recorder.wait(lambda: listed() == [(device_id, "Fan", "Office")])
        await recorder.wait(lambda: recorder.on(topic))
        renamed = await setup.client.patch(
            f"/api/v1/devices/{device_id}",
            json={"name": "Ceiling fan", "room": "Bedroom"},
            headers=setup.alice.headers,
        )
        assert renamed.status == 200, await renamed.text()
        await recorder.wait(
            lambda: recorder.on(topic)[-1].json()["device"]["name"] == "Ceiling fan"
        )
        config = recorder.on(topic)[-1].json()
        assert config["device"]["suggested_area"] == "Bedroom"
        await recorder.wait(lambda: listed() == [(device_id, "Ceiling fan", "Bedroom")])
        assert config["unique_id"] == f"staterelay_{device_id}_power"
        deleted = await setup.client.delete(
            f"/api/v1/devices/{device_id}", headers=setup.alice.headers
        )
        assert deleted.status == 204
        state_topic = f"{BASE}/{device_id}/state"
        await recorder.wait(lambda: recorder.on(topic)[-1].payload == b"")
        await recorder.wait(lambda: recorder.on(state_topic)[-1].payload == b"")
        await recorder.wait(lambda: listed() == [])
    async with subscriber(setup.broker, f"{PREFIX}/#", f"{BASE}/#") as newcomer:
        await setup.device("switch", "Other")  # something arrives, so the replay is over
        await newcomer.wait(lambda: any(m.topic.endswith("/config") for m in newcomer.messages))
        assert not [m for m in newcomer.messages if device_id in m.topic]


async def test_home_assistant_online_gets_configs_and_states_again(setup: Setup) -> None:
    """When Home Assistant says ``online`` on its status topic (after a restart that lost
    what the broker kept, say), every config and state is published again."""
    device_id = await setup.device("switch", "Lamp")
    topic = f"{PREFIX}/switch/{device_id}/power/config"
    async with subscriber(setup.broker, topic, f"{BASE}/{device_id}/state") as recorder:
        await recorder.wait(lambda: recorder.on(topic))  # the retained copies
        await recorder.wait(lambda: recorder.on(f"{BASE}/{device_id}/state"))
        before = len(recorder.messages)
        await recorder.publish(f"{PREFIX}/status", "online")
        await recorder.wait(lambda: len(recorder.on(topic)) >= 2)
        await recorder.wait(lambda: len(recorder.on(f"{BASE}/{device_id}/state")) >= 2)
        assert all(not m.retain for m in recorder.messages[before:])
        assert orjson.loads(recorder.on(topic)[-1].payload)["unique_id"].endswith("_power")


async def test_retained_topics_of_devices_deleted_meanwhile_are_cleared(
    aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker
) -> None:
    """Topics left by a device deleted while the bridge was away (its retained config and
    state) are emptied when the bridge connects; other applications' configs, and those of
    another StateRelay on the same broker (another base topic), stay."""
    ghost = "dev_gone"
    ghost_config = f"{PREFIX}/switch/{ghost}/power/config"
    foreign = f"{PREFIX}/switch/zigbee_plug/power/config"
    neighbour = f"{PREFIX}/switch/dev_theirs/power/config"
    async with subscriber(broker, f"{PREFIX}/#", f"{BASE}/#") as other:
        await other.publish(
            ghost_config,
            orjson.dumps(
                {"unique_id": f"staterelay_{ghost}_power", "state_topic": f"{BASE}/{ghost}/state"}
            ),
            retain=True,
        )
        await other.publish(f"{BASE}/{ghost}/state", b'{"state": {}}', retain=True)
        await other.publish(foreign, orjson.dumps({"unique_id": "zigbee_plug"}), retain=True)
        await other.publish(
            neighbour,
            orjson.dumps(
                {"unique_id": "staterelay_dev_theirs_power", "state_topic": "upstairs/x/state"}
            ),
            retain=True,
        )
        client = await aiohttp_client(mqtt_app(with_mqtt(settings, broker)))
        await make_account(client.app[CORE_KEY], HOUSEHOLD)
        await other.wait(lambda: other.on(ghost_config)[-1].payload == b"")
        await other.wait(lambda: other.on(f"{BASE}/{ghost}/state")[-1].payload == b"")
    async with subscriber(broker, foreign, neighbour, ghost_config) as newcomer:
        await newcomer.wait(lambda: newcomer.on(foreign) and newcomer.on(neighbour))
        assert newcomer.on(foreign)[-1].payload != b""
        assert newcomer.on(neighbour)[-1].payload != b""
        assert not newcomer.on(ghost_config)
