"""Home Assistant discovery: the retained configs that make each device an entity.

One config per entity at ``<prefix>/<component>/<device_id>/<role>/config``. Each device
type maps to the component Home Assistant 2024.3 and later accept for it (docs/mqtt.md,
the reference note's table): a switch is a ``switch``, a dimmer a ``light`` (the default
schema, brightness 0-100), a contact sensor a door ``binary_sensor``, a motion sensor a
motion one, a temperature sensor a ``sensor``, and a button both an ``event`` entity and
a device trigger, so automations start on a press. Templates read the state topic, which
holds the REST API's state object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from staterelay import __version__
from staterelay.core.records import Device
from staterelay.integrations.mqtt.topics import Topics

MANUFACTURER: Final = "StateRelay"
SUPPORT_URL: Final = "https://github.com/staterelay/staterelay"
UNIQUE_PREFIX: Final = "staterelay_"

# (component, role) of every entity a device type becomes.
ENTITIES: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "switch": (("switch", "power"),),
    "dimmer": (("light", "light"),),
    "contact_sensor": (("binary_sensor", "contact"),),
    "motion_sensor": (("binary_sensor", "motion"),),
    "temperature_sensor": (("sensor", "temperature"),),
    "button": (("event", "press"), ("device_automation", "press")),
}
_CELSIUS = (
    "{% set t = value_json.state.temperature %}"
    "{{ t.value if t.scale != 'FAHRENHEIT' else ((t.value - 32) * 5 / 9) | round(2) }}"
)
_FAHRENHEIT = (
    "{% set t = value_json.state.temperature %}"
    "{{ t.value if t.scale == 'FAHRENHEIT' else (t.value * 9 / 5 + 32) | round(2) }}"
)


@dataclass(frozen=True, slots=True)
class Config:
    """One discovery config: its topic and its JSON payload."""

    topic: str
    payload: Mapping[str, Any]


def unique_id(device_id: str, role: str) -> str:
    """The entity's id in Home Assistant's registry; stable across renames."""
    return f"{UNIQUE_PREFIX}{device_id}_{role}"


def config_topics(topics: Topics, device: Device) -> tuple[str, ...]:
    """Every discovery topic of ``device`` (to publish, or to clear once it is deleted)."""
    return tuple(
        topics.config(component, device.id, role)
        for component, role in ENTITIES.get(device.type, ())
    )


def device_block(device: Device, public_url: str) -> dict[str, Any]:
    """Home Assistant's device entry: name, model, area and a link to the device's page."""
    block: dict[str, Any] = {
        "identifiers": [f"{UNIQUE_PREFIX}{device.id}"],
        "name": device.name,
        "manufacturer": MANUFACTURER,
        "model": device.type,
        "sw_version": __version__,
        "configuration_url": f"{public_url}/dashboard/devices/{device.id}",
    }
    if device.room:
        block["suggested_area"] = device.room
    return block


def configs(topics: Topics, device: Device, public_url: str) -> tuple[Config, ...]:
    """The discovery configs of ``device``, one per entity."""
    state = topics.state(device.id)
    common: dict[str, Any] = {
        "name": None,
        "device": device_block(device, public_url),
        "origin": {"name": MANUFACTURER, "sw_version": __version__, "support_url": SUPPORT_URL},
        "availability": [{"topic": topics.status}],
        # No "qos": Home Assistant's default 0 for commands. A QoS 1 command's PUBACK makes
        # Mosquitto (set_tcp_nodelay false by default) hold the state message that follows
        # it for the commander's delayed ACK, about 40 ms (bench/mqtt.py).
    }
    found: list[Config] = []
    for component, role in ENTITIES.get(device.type, ()):
        payload: dict[str, Any]
        if component == "switch":
            payload = {
                "command_topic": topics.set(device.id, "power"),
                "state_topic": state,
                "value_template": "{{ value_json.state.power }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            }
        elif component == "light":
            payload = {
                "command_topic": topics.set(device.id, "power"),
                "state_topic": state,
                "state_value_template": "{{ value_json.state.power }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "brightness_command_topic": topics.set(device.id, "brightness"),
                "brightness_state_topic": state,
                "brightness_value_template": "{{ value_json.state.brightness }}",
                "brightness_scale": 100,
                "on_command_type": "brightness",
            }
        elif component == "binary_sensor":
            payload = {
                "state_topic": state,
                "value_template": "{{ value_json.state.detection }}",
                "payload_on": "DETECTED",
                "payload_off": "NOT_DETECTED",
                "device_class": "door" if role == "contact" else "motion",
            }
        elif component == "sensor":
            fahrenheit = device.options.get("scale") == "FAHRENHEIT"
            payload = {
                "state_topic": state,
                "value_template": _FAHRENHEIT if fahrenheit else _CELSIUS,
                "device_class": "temperature",
                "state_class": "measurement",
                "unit_of_measurement": "°F" if fahrenheit else "°C",
                "suggested_display_precision": 1,
            }
        elif component == "event":
            payload = {
                "state_topic": topics.event(device.id),
                "event_types": ["press"],
                "device_class": "button",
            }
        else:  # device_automation: a trigger "button pressed" for automations
            found.append(
                Config(
                    topics.config(component, device.id, role),
                    {
                        "automation_type": "trigger",
                        "type": "button_short_press",
                        "subtype": "button_1",
                        "topic": topics.event(device.id),
                        "value_template": "{{ value_json.event_type }}",
                        "payload": "press",
                        "device": common["device"],
                    },
                )
            )
            continue
        found.append(
            Config(
                topics.config(component, device.id, role),
                {**common, "unique_id": unique_id(device.id, role), **payload},
            )
        )
    return tuple(found)
