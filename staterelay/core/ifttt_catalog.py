"""What StateRelay offers IFTTT: triggers, actions, their fields and their ingredients.

IFTTT sends every field value as a string and expects ingredients as strings; this module
parses the one and renders the other, so the service and the adapter never guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from staterelay.core.errors import BadRequest, NotFound
from staterelay.core.ids import ENDPOINT_ID_MAX
from staterelay.core.records.ifttt import (
    BRIGHTNESS_KIND,
    POWER_KIND,
    PRESS_KIND,
    SENSOR_KIND,
    IftttEvent,
    Threshold,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
IDENTITY_MAX = 255
THRESHOLD_MAX = 1e6
DIRECTIONS = ("above", "below")
POWER_WORDS = ("on", "off", "toggle")
SENSOR_TYPES = ("contact_sensor", "motion_sensor", "temperature_sensor")
_DETECTION_WORDS = {
    "detected": "DETECTED",
    "not_detected": "NOT_DETECTED",
    "not detected": "NOT_DETECTED",
    "true": "DETECTED",
    "false": "NOT_DETECTED",
    "yes": "DETECTED",
    "no": "NOT_DETECTED",
    "on": "DETECTED",
    "off": "NOT_DETECTED",
    "1": "DETECTED",
    "0": "NOT_DETECTED",
}

Ingredients = dict[str, str]


@dataclass(frozen=True, slots=True)
class TriggerFields:
    """A trigger's parsed fields: the device and, for thresholds, the threshold."""

    device_id: str
    threshold: Threshold | None = None

    @property
    def variant(self) -> str:
        """The timeline variant these fields read."""
        return self.threshold.variant if self.threshold else ""

    def as_strings(self) -> dict[str, str]:
        """The fields as IFTTT sends them, for storing with the trigger identity."""
        fields = {"device": self.device_id}
        if self.threshold is not None:
            fields["direction"] = self.threshold.direction
            fields["threshold"] = f"{self.threshold.value:g}"
        return fields


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """One trigger: its timeline kind, device types, fields and ingredients."""

    slug: str
    kind: str
    device_types: tuple[str, ...]
    fields: tuple[str, ...]
    render: Callable[[IftttEvent, TriggerFields, tzinfo], Ingredients]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action: the device types it works on and its fields."""

    slug: str
    device_types: tuple[str, ...]
    fields: tuple[str, ...]


# ingredients ---------------------------------------------------------------------------------


def local_time(ts: float, tz: tzinfo) -> str:
    """An ISO 8601 time with offset in the user's time zone: ``2024-05-01T12:00:05+02:00``."""
    return datetime.fromtimestamp(int(ts), tz).isoformat()


def user_timezone(user: Any) -> tzinfo:
    """The IANA zone IFTTT names in ``user.timezone``; UTC when absent or unknown."""
    name = user.get("timezone") if isinstance(user, Mapping) else None
    if isinstance(name, str) and 0 < len(name) <= 64:
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
            pass
    return UTC


def number_text(value: Any) -> str:
    """A number as people write it: ``21.5``, ``20``, ``75``; other values as text."""
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
    return "" if value is None else str(value)


def _scale(event: IftttEvent) -> str:
    for value in (event.new_value, event.old_value):
        if isinstance(value, Mapping) and isinstance(value.get("scale"), str):
            return str(value["scale"])
    return ""


def _common(event: IftttEvent) -> Ingredients:
    return {
        "device_name": event.device_name,
        "device_id": event.device_id,
        "cause": event.cause or "",
        "source": event.source or "",
    }


def _power(event: IftttEvent, _fields: TriggerFields, tz: tzinfo) -> Ingredients:
    return {
        **_common(event),
        "power": str(event.new_value or "").lower(),
        "previous_power": str(event.old_value or "").lower(),
        "changed_at": local_time(event.occurred_at, tz),
    }


def _brightness(event: IftttEvent, _fields: TriggerFields, tz: tzinfo) -> Ingredients:
    return {
        **_common(event),
        "brightness": number_text(event.new_value),
        "previous_brightness": number_text(event.old_value),
        "changed_at": local_time(event.occurred_at, tz),
    }


def _sensor(event: IftttEvent, _fields: TriggerFields, tz: tzinfo) -> Ingredients:
    return {
        **_common(event),
        "sensor": event.property or "",
        "value": number_text(event.new_value),
        "previous_value": number_text(event.old_value),
        "scale": _scale(event),
        "changed_at": local_time(event.occurred_at, tz),
    }


def _crossing(event: IftttEvent, fields: TriggerFields, tz: tzinfo) -> Ingredients:
    threshold = fields.threshold
    return {
        **_common(event),
        "temperature": number_text(event.new_value),
        "previous_temperature": number_text(event.old_value),
        "direction": threshold.direction if threshold else "",
        "threshold": f"{threshold.value:g}" if threshold else "",
        "scale": _scale(event),
        "crossed_at": local_time(event.occurred_at, tz),
    }


def _press(event: IftttEvent, _fields: TriggerFields, tz: tzinfo) -> Ingredients:
    return {**_common(event), "pressed_at": local_time(event.occurred_at, tz)}


TRIGGERS: Mapping[str, TriggerSpec] = {
    spec.slug: spec
    for spec in (
        TriggerSpec("power_changed", POWER_KIND, ("switch", "dimmer"), ("device",), _power),
        TriggerSpec("brightness_changed", BRIGHTNESS_KIND, ("dimmer",), ("device",), _brightness),
        TriggerSpec("sensor_value_changed", SENSOR_KIND, SENSOR_TYPES, ("device",), _sensor),
        TriggerSpec(
            "temperature_crossed_threshold",
            SENSOR_KIND,
            ("temperature_sensor",),
            ("device", "direction", "threshold"),
            _crossing,
        ),
        TriggerSpec("button_pressed", PRESS_KIND, ("button",), ("device",), _press),
    )
}

ACTIONS: Mapping[str, ActionSpec] = {
    spec.slug: spec
    for spec in (
        ActionSpec("set_power", ("switch", "dimmer"), ("device", "power")),
        ActionSpec("set_brightness", ("dimmer",), ("device", "brightness")),
        ActionSpec("set_sensor_value", SENSOR_TYPES, ("device", "value")),
        ActionSpec("press_button", ("button",), ("device",)),
    )
}


def trigger_spec(slug: str) -> TriggerSpec:
    """The trigger called ``slug``; ``NotFound`` otherwise."""
    spec = TRIGGERS.get(slug)
    if spec is None:
        raise NotFound(f"there is no trigger called {slug!r}")
    return spec


def action_spec(slug: str) -> ActionSpec:
    """The action called ``slug``; ``NotFound`` otherwise."""
    spec = ACTIONS.get(slug)
    if spec is None:
        raise NotFound(f"there is no action called {slug!r}")
    return spec


# parsing what IFTTT sends ----------------------------------------------------------------------


def parse_device(value: Any, *, field: str = "device") -> str:
    """A device id field; ``BadRequest`` when it is missing or cannot be one."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field} is required: choose a device", field=field)
    device_id = value.strip()
    if len(device_id) > ENDPOINT_ID_MAX or not device_id.isprintable():
        raise BadRequest(f"{field} is not a device id", field=field)
    return device_id


def parse_direction(value: Any) -> str:
    """``above`` or ``below`` (any case)."""
    if isinstance(value, str) and value.strip().lower() in DIRECTIONS:
        return value.strip().lower()
    raise BadRequest("direction must be above or below", field="direction")


def parse_number(value: Any, *, field: str) -> float:
    """A finite number, given as a number or as text such as ``"20"`` or ``"-3.5"``."""
    if isinstance(value, bool):
        raise BadRequest(f"{field} must be a number", field=field)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and 0 < len(value.strip()) <= 32:
        text = value.strip().replace(",", ".") if value.count(",") == 1 else value.strip()
        try:
            number = float(text)
        except ValueError:
            raise BadRequest(f"{field} must be a number such as 20 or 21.5", field=field) from None
    else:
        raise BadRequest(f"{field} must be a number such as 20 or 21.5", field=field)
    if not math.isfinite(number) or abs(number) > THRESHOLD_MAX:
        raise BadRequest(f"{field} must be a plausible number", field=field)
    return number


def parse_trigger_fields(spec: TriggerSpec, raw: Any) -> TriggerFields:
    """The ``triggerFields`` of a poll; ``BadRequest`` when missing or invalid."""
    if raw is None:
        raise BadRequest("triggerFields is missing", field="triggerFields")
    if not isinstance(raw, Mapping):
        raise BadRequest("triggerFields must be an object", field="triggerFields")
    device_id = parse_device(raw.get("device"))
    if "threshold" not in spec.fields:
        return TriggerFields(device_id)
    direction = parse_direction(raw.get("direction"))
    value = parse_number(raw.get("threshold"), field="threshold")
    return TriggerFields(device_id, Threshold("above" if direction == "above" else "below", value))


def parse_limit(raw: Any) -> int:
    """IFTTT's ``limit``: 50 when absent, 0 means none; never ``limit or 50``."""
    if raw is None:
        return DEFAULT_LIMIT
    if isinstance(raw, bool):
        raise BadRequest("limit must be a whole number", field="limit")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if not isinstance(raw, int) or raw < 0:
        raise BadRequest("limit must be a whole number, 0 or more", field="limit")
    return min(raw, MAX_LIMIT)


def parse_identity(raw: Any) -> str | None:
    """A ``trigger_identity``: opaque text, or None when IFTTT sent none."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not 0 < len(raw) <= IDENTITY_MAX or not raw.isprintable():
        raise BadRequest("trigger_identity must be a short string", field="trigger_identity")
    return raw


def parse_brightness(value: Any) -> int:
    """A brightness from 0 to 100, as IFTTT sends it (``"60"``, ``"60%"``)."""
    text = value.strip().removesuffix("%") if isinstance(value, str) else value
    number = parse_number(text, field="brightness")
    if not number.is_integer() or not 0 <= number <= 100:
        raise BadRequest("brightness must be a whole number from 0 to 100", field="brightness")
    return int(number)


def parse_power(value: Any) -> str:
    """``on``, ``off`` or ``toggle`` (any case)."""
    if isinstance(value, str) and value.strip().lower() in POWER_WORDS:
        return value.strip().lower()
    raise BadRequest("power must be on, off or toggle", field="power")


def parse_detection(value: Any) -> str:
    """A contact or motion reading: detected / not detected (or true/false, yes/no)."""
    word = value.strip().lower() if isinstance(value, str) else None
    if word is not None and word in _DETECTION_WORDS:
        return _DETECTION_WORDS[word]
    raise BadRequest("value must be detected or not_detected", field="value")
