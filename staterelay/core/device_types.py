"""Device types, their properties and value validation: the rules every surface shares."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from staterelay.core.errors import InvalidInput, UnknownField, ValueOutOfRange

POWER_VALUES = ("ON", "OFF")
DETECTION_VALUES = ("DETECTED", "NOT_DETECTED")
TEMPERATURE_SCALES = ("CELSIUS", "FAHRENHEIT")
# Plausible air temperatures: colder than any recorded on Earth is refused, and so is
# anything hotter than a sauna; both are typos, not readings.
TEMPERATURE_RANGE = {"CELSIUS": (-90.0, 150.0), "FAHRENHEIT": (-130.0, 302.0)}
SCALE_SYMBOLS = {"CELSIUS": "°C", "FAHRENHEIT": "°F"}

NAME_MAX = 128
DESCRIPTION_MAX = 128
ROOM_MAX = 64


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One settable property of a device type."""

    name: str
    normalize: Callable[[Any, Mapping[str, Any]], Any]
    default: Callable[[Mapping[str, Any]], Any]
    description: str


@dataclass(frozen=True, slots=True)
class DeviceType:
    """A kind of virtual device."""

    name: str
    properties: tuple[PropertySpec, ...]
    momentary: bool = False
    options: tuple[str, ...] = ()

    @property
    def property_names(self) -> tuple[str, ...]:
        """Names of the settable properties."""
        return tuple(p.name for p in self.properties)

    def spec(self, name: str) -> PropertySpec:
        """The spec of one property; ``UnknownField`` when the type has no such property."""
        for prop in self.properties:
            if prop.name == name:
                return prop
        raise UnknownField(f"a {self.name} has no property {name!r}", field=name)


def normalize_power(value: Any, _options: Mapping[str, Any]) -> str:
    """``ON``/``OFF`` (case-insensitive) or a boolean."""
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if isinstance(value, str) and value.upper() in POWER_VALUES:
        return value.upper()
    raise InvalidInput("power must be ON or OFF", field="power")


def normalize_brightness(value: Any, _options: Mapping[str, Any]) -> int:
    """A whole number from 0 to 100."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("brightness must be a whole number from 0 to 100", field="brightness")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise InvalidInput("brightness must be a whole number from 0 to 100", field="brightness")
    number = int(value)
    if not 0 <= number <= 100:
        raise ValueOutOfRange("brightness must be from 0 to 100", field="brightness")
    return number


def normalize_detection(value: Any, _options: Mapping[str, Any]) -> str:
    """``DETECTED``/``NOT_DETECTED`` (case-insensitive) or a boolean."""
    if isinstance(value, bool):
        return "DETECTED" if value else "NOT_DETECTED"
    if isinstance(value, str) and value.upper() in DETECTION_VALUES:
        return value.upper()
    raise InvalidInput("detection must be DETECTED or NOT_DETECTED", field="detection")


def normalize_temperature(value: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """A number (in the device's scale) or ``{"value": n, "scale": "CELSIUS"|"FAHRENHEIT"}``."""
    scale = str(options.get("scale", "CELSIUS"))
    if isinstance(value, dict):
        unknown = set(value) - {"value", "scale"}
        if unknown:
            raise UnknownField(
                f"temperature has no field {sorted(unknown)[0]!r}", field="temperature"
            )
        scale = value.get("scale", scale)
        if scale not in TEMPERATURE_SCALES:
            raise InvalidInput("scale must be CELSIUS or FAHRENHEIT", field="temperature.scale")
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("temperature must be a number", field="temperature")
    if isinstance(value, int) and abs(value) > 10**6:
        raise ValueOutOfRange("temperature is far outside any plausible range", field="temperature")
    if not math.isfinite(value):
        raise InvalidInput("temperature must be a finite number", field="temperature")
    low, high = TEMPERATURE_RANGE[scale]
    if not low <= value <= high:
        raise ValueOutOfRange(
            f"temperature must be from {low:g} to {high:g} {SCALE_SYMBOLS[scale]}",
            field="temperature",
        )
    return {"value": round(float(value), 2), "scale": scale}


def _reject_direct(value: Any, _options: Mapping[str, Any]) -> Any:
    raise InvalidInput("a button is pressed, not set: POST .../press", field="last_pressed_at")


_POWER = PropertySpec("power", normalize_power, lambda _o: "OFF", "ON or OFF")
_BRIGHTNESS = PropertySpec("brightness", normalize_brightness, lambda _o: 100, "0 to 100 percent")
_DETECTION = PropertySpec(
    "detection", normalize_detection, lambda _o: "NOT_DETECTED", "DETECTED or NOT_DETECTED"
)
_TEMPERATURE = PropertySpec(
    "temperature",
    normalize_temperature,
    lambda o: {
        "value": 20.0 if o.get("scale", "CELSIUS") == "CELSIUS" else 68.0,
        "scale": o.get("scale", "CELSIUS"),
    },
    "a reading with its scale",
)
_LAST_PRESSED = PropertySpec(
    "last_pressed_at", _reject_direct, lambda _o: None, "when the button was last pressed"
)

DEVICE_TYPES: dict[str, DeviceType] = {
    t.name: t
    for t in (
        DeviceType("switch", (_POWER,), options=("routine_trigger",)),
        DeviceType("dimmer", (_POWER, _BRIGHTNESS)),
        DeviceType("contact_sensor", (_DETECTION,)),
        DeviceType("motion_sensor", (_DETECTION,)),
        DeviceType("temperature_sensor", (_TEMPERATURE,), options=("scale",)),
        DeviceType("button", (_LAST_PRESSED,), momentary=True),
    )
}


def device_type(name: Any) -> DeviceType:
    """The device type called ``name``; ``InvalidInput`` listing the known ones otherwise."""
    if isinstance(name, str) and name in DEVICE_TYPES:
        return DEVICE_TYPES[name]
    raise InvalidInput(f"type must be one of {', '.join(DEVICE_TYPES)}", field="type")


def require_text(value: Any, field: str) -> str:
    """A string that is valid Unicode text (no lone surrogates), else ``InvalidInput``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    return value


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds C0 control characters or DEL."""
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def validate_name(value: Any) -> str:
    """A device name: 1-128 characters after trimming, no control characters."""
    name = require_text(value, "name").strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidInput(f"name must be 1 to {NAME_MAX} characters", field="name")
    if has_control_characters(name):
        raise InvalidInput("name must not contain control characters", field="name")
    return name


def validate_description(value: Any) -> str:
    """A device description of at most 128 characters."""
    if value is None:
        return ""
    text = require_text(value, "description").strip()
    if len(text) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"description must be at most {DESCRIPTION_MAX} characters", field="description"
        )
    if has_control_characters(text):
        raise InvalidInput("description must not contain control characters", field="description")
    return text


def validate_room(value: Any) -> str:
    """A room name of at most 64 characters, inner spaces collapsed; "" is no room."""
    if value is None:
        return ""
    text = " ".join(require_text(value, "room").split())
    if len(text) > ROOM_MAX:
        raise InvalidInput(f"room must be at most {ROOM_MAX} characters", field="room")
    if has_control_characters(text):
        raise InvalidInput("room must not contain control characters", field="room")
    return text


def same_room(room: str, rooms: Iterable[str]) -> str:
    """``room`` spelled as a room the household has already when they differ only in case."""
    key = room.casefold()
    return next((known for known in rooms if known.casefold() == key), room)


def validate_options(kind: DeviceType, value: Any) -> dict[str, Any]:
    """Type-specific options: ``routine_trigger`` (switch) and ``scale`` (temperature sensor)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("options must be an object", field="options")
    options: dict[str, Any] = {}
    for key, item in value.items():
        if key not in kind.options:
            raise UnknownField(f"a {kind.name} has no option {key!r}", field=f"options.{key}")
        if key == "routine_trigger":
            if not isinstance(item, bool):
                raise InvalidInput(
                    "routine_trigger must be true or false", field="options.routine_trigger"
                )
            options[key] = item
        elif key == "scale":
            if item not in TEMPERATURE_SCALES:
                raise InvalidInput("scale must be CELSIUS or FAHRENHEIT", field="options.scale")
            options[key] = item
    return options


def normalize_properties(
    kind: DeviceType, values: Any, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate a partial property update and return the normalized values."""
    if not isinstance(values, dict):
        raise InvalidInput("state must be an object of property values")
    if kind.momentary:
        raise InvalidInput("a button has no state to set; press it instead")
    if not values:
        raise InvalidInput("state must name at least one property")
    return {name: kind.spec(name).normalize(value, options) for name, value in values.items()}


DIMMER_DEFAULT_LEVEL = 100


def apply_type_rules(
    kind: DeviceType, current: Mapping[str, Any], wanted: Mapping[str, Any]
) -> dict[str, Any]:
    """The values a (normalized) update really sets, once the type's rules are applied.

    A dimmer is never on at 0 %, whichever surface asks: brightness 0 switches it off and
    keeps the level it had, so switching it on again brings that level back; a level above
    0 asked for without a power value switches it on, as a wall dimmer does; switching on a
    dimmer left at 0 (from before this rule) brings it to full.
    """
    result = dict(wanted)
    if kind.name != "dimmer":
        return result
    level = result.get("brightness")
    if level == 0:
        del result["brightness"]
        result["power"] = "OFF"
    elif level is not None and "power" not in result:
        result["power"] = "ON"
    if result.get("power") == "ON" and not result.get("brightness", current.get("brightness")):
        result["brightness"] = DIMMER_DEFAULT_LEVEL
    return result


def default_properties(kind: DeviceType, options: Mapping[str, Any]) -> dict[str, Any]:
    """The properties of a new device of this type."""
    return {p.name: p.default(options) for p in kind.properties}
