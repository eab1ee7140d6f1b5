"""How devices and activity read to people: labels, state text, delivery results, curl lines.

The same views feed the templates and the live WebSocket messages, so a change pushed to an
open page reads exactly as it would after a reload.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from staterelay.browser.render import when
from staterelay.core.clock import iso
from staterelay.core.device_types import SCALE_SYMBOLS, TEMPERATURE_RANGE
from staterelay.core.records import ActivityEntry, Device
from staterelay.settings import Settings

TYPE_LABELS: Final = {
    "switch": "Switch",
    "dimmer": "Dimmer",
    "contact_sensor": "Contact sensor",
    "motion_sensor": "Motion sensor",
    "temperature_sensor": "Temperature sensor",
    "button": "Button",
}
TYPE_HINTS: Final = {
    "switch": "On or off. Alexa can switch it; IFTTT and webhooks hear every flip.",
    "dimmer": "On or off with a brightness from 0 to 100 %.",
    "contact_sensor": "Open or closed, like a door sensor. It can start an Alexa Routine.",
    "motion_sensor": "Motion or no motion. It can start an Alexa Routine.",
    "temperature_sensor": "A temperature reading you set from a script or by hand.",
    "button": "Pressed, never on or off: rings as a doorbell press in Alexa.",
}
SOURCE_LABELS: Final = {
    "api": "API",
    "ui": "Dashboard",
    "alexa": "Alexa",
    "ifttt": "IFTTT",
    "google": "Google Home",
    "webhook": "Webhook",
    "cli": "Command line",
    "system": "StateRelay",
}
_ALEXA_EVENTS: Final = {
    "state.changed": "ChangeReport",
    "button.pressed": "DoorbellPress",
    "device.created": "AddOrUpdateReport",
    "device.updated": "AddOrUpdateReport",
    "device.deleted": "DeleteReport",
}


def type_label(device_type: str) -> str:
    """``Contact sensor`` for ``contact_sensor``."""
    return TYPE_LABELS.get(device_type, device_type.replace("_", " ").capitalize())


def number(value: Any) -> str:
    """``21.5``, ``20``: a number as people write it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def power_text(value: Any) -> str:
    """``On`` or ``Off``."""
    return "On" if value == "ON" else "Off"


def detection_text(device_type: str, value: Any) -> str:
    """``Open``/``Closed`` for contact sensors, ``Motion``/``No motion`` for motion sensors."""
    detected = value == "DETECTED"
    if device_type == "contact_sensor":
        return "Open" if detected else "Closed"
    return "Motion" if detected else "No motion"


def temperature_text(value: Any) -> str:
    """``21.5 °C``."""
    if isinstance(value, Mapping):
        scale = SCALE_SYMBOLS.get(str(value.get("scale")), "")
        return f"{number(value.get('value'))} {scale}".strip()
    return number(value)


def state_text(device: Device) -> str:
    """A device's state in a few words: ``On · 60 %``, ``Open``, ``21.5 °C``."""
    values = {name: prop.value for name, prop in device.properties.items()}
    if device.type == "switch":
        return power_text(values.get("power"))
    if device.type == "dimmer":
        power = power_text(values.get("power"))
        return f"{power} · {number(values.get('brightness', 0))} %"
    if device.type in ("contact_sensor", "motion_sensor"):
        return detection_text(device.type, values.get("detection"))
    if device.type == "temperature_sensor":
        return temperature_text(values.get("temperature"))
    if device.type == "button":
        return "Never pressed" if values.get("last_pressed_at") is None else "Pressed"
    return ", ".join(f"{key} {value}" for key, value in values.items())


def temperature_bounds(device: Device) -> tuple[float, float, str]:
    """The lowest and highest reading the device accepts, and its scale."""
    scale = str(device.options.get("scale", "CELSIUS"))
    low, high = TEMPERATURE_RANGE.get(scale, TEMPERATURE_RANGE["CELSIUS"])
    return low, high, scale


def device_view(device: Device) -> dict[str, Any]:
    """A device for templates and live messages: its state values and their readable text."""
    state = {name: prop.value for name, prop in device.properties.items()}
    changed = max((prop.changed_at for prop in device.properties.values()), default=None)
    view: dict[str, Any] = {
        "id": device.id,
        "type": device.type,
        "type_label": type_label(device.type),
        "name": device.name,
        "description": device.description,
        "room": device.room,
        "options": dict(device.options),
        "version": device.version,
        "state": state,
        "state_text": state_text(device),
        "changed_at": iso(changed),
        "changed_text": when(changed),
        "updated_at": iso(device.updated_at),
    }
    if device.type == "temperature_sensor":
        temperature = state.get("temperature") or {}
        low, high, scale = temperature_bounds(device)
        view["temperature"] = {
            "value": number(temperature.get("value", "")),
            "symbol": SCALE_SYMBOLS.get(scale, ""),
            "min": number(low),
            "max": number(high),
        }
    if device.type == "button":
        pressed = device.properties.get("last_pressed_at")
        view["last_pressed_at"] = state.get("last_pressed_at")
        view["last_pressed_text"] = (
            when(pressed.changed_at) if pressed and pressed.value else "never"
        )
    return view


# rooms ---------------------------------------------------------------------------------------
ROOM_SUGGESTIONS: Final = (
    "Living room",
    "Kitchen",
    "Bedroom",
    "Bathroom",
    "Hallway",
    "Office",
    "Garage",
    "Garden",
)


def room_groups(views: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Device views grouped by room: rooms A to Z, then the devices without one."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for view in views:
        groups.setdefault(str(view.get("room") or ""), []).append(view)
    rooms = sorted((room for room in groups if room), key=str.casefold)
    if "" in groups:
        rooms.append("")
    return [{"room": room, "devices": groups[room]} for room in rooms]


def room_choices(rooms: Sequence[str]) -> list[str]:
    """What a room field suggests: the household's rooms, then common ones it lacks."""
    known = {room.casefold() for room in rooms}
    return [*rooms, *(room for room in ROOM_SUGGESTIONS if room.casefold() not in known)]


# activity ------------------------------------------------------------------------------------
def activity_view(
    entry: ActivityEntry,
    types: Mapping[str, str] | None = None,
    webhooks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One activity row as a sentence, where it came from and whether it went well.

    ``types`` maps device ids to device types, so a sensor's change reads as ``Opened`` or
    ``Motion detected`` rather than ``Detected``; ``webhooks`` maps webhook ids to the names
    a delivery row shows.
    """
    device_type = (types or {}).get(entry.device_id or "", "")
    text, tone = _describe(entry, device_type, webhooks or {})
    return {
        "id": entry.id,
        "device_id": entry.device_id,
        "device_name": entry.device_name or "",
        "kind": entry.kind,
        "source": entry.source,
        "source_label": SOURCE_LABELS.get(entry.source, entry.source),
        "text": text,
        "cause": entry.cause or "",
        "tone": tone,
        "at": iso(entry.created_at),
        "when": when(entry.created_at),
    }


def _describe(
    entry: ActivityEntry, device_type: str, webhooks: Mapping[str, str]
) -> tuple[str, str]:
    if entry.kind == "state":
        return _state_sentence(entry, device_type), ""
    if entry.kind == "press":
        return "Pressed", ""
    if entry.kind == "device.created":
        kind = entry.detail.get("type")
        return f"Created ({type_label(str(kind))})" if kind else "Created", ""
    if entry.kind == "device.updated":
        if entry.new_value is not None and entry.old_value is not None:
            return f"Renamed from “{entry.old_value}” to “{entry.new_value}”", ""
        changed = entry.detail.get("changed") or []
        names = ", ".join(str(name) for name in changed) if isinstance(changed, list) else ""
        return (f"Changed {names}" if names else "Changed"), ""
    if entry.kind == "device.deleted":
        return "Deleted", ""
    if entry.kind == "delivery":
        return delivery_text(entry.detail, webhooks)
    return entry.kind.replace(".", " ").replace("_", " ").capitalize(), ""


def _state_sentence(entry: ActivityEntry, device_type: str) -> str:
    prop, old, new = entry.property, entry.old_value, entry.new_value
    if prop == "power":
        return "Turned on" if new == "ON" else "Turned off"
    if prop == "brightness":
        before = f"{number(old)} % → " if old is not None else ""
        return f"Brightness {before}{number(new)} %"
    if prop == "detection":
        detected = new == "DETECTED"
        if device_type == "motion_sensor":
            return "Motion detected" if detected else "Motion stopped"
        if device_type == "contact_sensor":
            return "Opened" if detected else "Closed"
        return "Detected" if detected else "Not detected"
    if prop == "temperature":
        before = f"{temperature_text(old)} → " if old is not None else ""
        return f"Temperature {before}{temperature_text(new)}"
    return f"{prop} → {new}"


def delivery_text(
    detail: Mapping[str, Any], webhooks: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """``Alexa ChangeReport accepted (202)``, ``IFTTT notified (200)``, ``Webhook … answered 500``,
    ``Alexa ChangeReport sent with msg_… (merged)``."""
    sink = str(detail.get("sink", ""))
    status = detail.get("status_code")
    error = detail.get("error")
    outcome = str(detail.get("outcome", "delivered"))
    attempt = detail.get("attempt")
    code = f" ({status})" if status is not None else ""
    tone = "ok" if outcome in ("delivered", "merged") else "error" if outcome == "dead" else "retry"
    if sink == "alexa":
        what = f"Alexa {_ALEXA_EVENTS.get(str(detail.get('event_type')), 'event')}"
        done = f"{what} accepted{code}"
    elif sink == "ifttt":
        what = "IFTTT"
        done = f"IFTTT notified{code}"
    elif sink == "google":
        kind = str(detail.get("event_type"))
        what = "Google Home " + (
            "Request Sync"
            if kind.startswith("device.")
            else "notification"
            if kind == "button.pressed"
            else "Report State"
        )
        done = f"{what} accepted{code}"
    elif sink == "webhook":
        name = (webhooks or {}).get(str(detail.get("destination", "")))
        what = f"Webhook “{name}”" if name else "Webhook"
        done = f"{what} answered {status}" if status is not None else f"{what} delivered"
    else:
        what = sink.capitalize() or "Delivery"
        done = f"{what} delivered{code}"
    if outcome == "delivered":
        return done, tone
    if outcome == "merged":
        into = detail.get("merged_into")
        return f"{what} merged into the report sent for {into}", tone
    reason = str(error) if error else f"answered {status}" if status is not None else "failed"
    if outcome == "retry":
        again = f", attempt {attempt}" if isinstance(attempt, int) else ""
        return f"{what} failed{code}: {reason} (will retry{again})", tone
    return f"{what} failed{code}: {reason}", tone


# curl ----------------------------------------------------------------------------------------
def sample_state(device: Device) -> dict[str, Any]:
    """A plausible body for ``PUT …/state`` of this device."""
    if device.type == "switch":
        return {"power": "ON"}
    if device.type == "dimmer":
        return {"power": "ON", "brightness": 60}
    if device.type in ("contact_sensor", "motion_sensor"):
        return {"detection": "DETECTED"}
    if device.type == "temperature_sensor":
        return {"temperature": 21.5 if device.options.get("scale") != "FAHRENHEIT" else 70.7}
    return {}


def curl_snippet(settings: Settings, device: Device) -> str:
    """A shell command that changes this device through the REST API."""
    url = f"{settings.role_url('api')}/api/v1/devices/{device.id}"
    auth = '-H "Authorization: Bearer $STATERELAY_KEY"'
    if device.type == "button":
        return f"curl -X POST {url}/press \\\n  {auth}"
    body = json.dumps(sample_state(device))
    return (
        f"curl -X PUT {url}/state \\\n  {auth} \\\n"
        f"  -H 'Content-Type: application/json' \\\n  -d '{body}'"
    )
