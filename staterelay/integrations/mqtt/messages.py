"""The bridge's payloads: a device's state, an outbox row's event, a command's values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from staterelay.core.clock import iso
from staterelay.core.errors import InvalidInput
from staterelay.core.records import Device, OutboxItem

MAX_COMMAND_BYTES: Final = 65536


def state_message(device: Device) -> dict[str, Any]:
    """A device's state topic payload: the REST API's state object."""
    return {
        "device_id": device.id,
        "state": {name: prop.value for name, prop in device.properties.items()},
        "state_changed_at": {
            name: iso(prop.changed_at) for name, prop in device.properties.items()
        },
        "version": device.version,
    }


def event_message(item: OutboxItem) -> dict[str, Any]:
    """An event topic payload: ``press`` for a button, ``transition`` for a trigger property."""
    payload: Mapping[str, Any] = item.payload
    body: dict[str, Any]
    if item.event_type == "button.pressed":
        body = {"event_type": "press"}
    else:
        body = {
            "event_type": "transition",
            "property": payload.get("property"),
            "old": payload.get("old"),
            "new": payload.get("new"),
        }
    return {
        **body,
        "id": item.event_id,
        "device_id": item.device_id,
        "source": payload.get("source"),
        "version": payload.get("version"),
        "at": payload.get("timestamp"),
    }


def parse_command(payload: bytes, prop: str | None) -> dict[str, Any]:
    """A command's property values: a JSON object on ``.../set``, a plain value on
    ``.../set/<property>`` (a number or JSON value when it parses as one, else the text)."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise InvalidInput(f"the payload is larger than {MAX_COMMAND_BYTES} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput("the payload is not UTF-8 text") from None
    if prop is not None:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = text
        return {prop: value}
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            'the payload is not JSON: send an object of property values, e.g. {"power": "ON"}'
        ) from None
    if not isinstance(values, dict):
        raise InvalidInput('the payload must be a JSON object, e.g. {"power": "ON"}')
    return values
