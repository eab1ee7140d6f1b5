"""Records of the IFTTT integration: timeline events, trigger identities and thresholds.

Events are grouped by *kind*, one kind per trigger timeline: ``power``, ``brightness``,
``sensor`` (a contact, motion or temperature reading) and ``press``. Threshold crossings are
``sensor`` events of a *variant* (``above:20.0``); every other event has the variant ``""``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["above", "below"]

POWER_KIND = "power"
BRIGHTNESS_KIND = "brightness"
SENSOR_KIND = "sensor"
PRESS_KIND = "press"

PROPERTY_KINDS: Mapping[str, str] = {
    "power": POWER_KIND,
    "brightness": BRIGHTNESS_KIND,
    "detection": SENSOR_KIND,
    "temperature": SENSOR_KIND,
}
"""The device property whose changes make each kind of event."""

REALTIME_SINK = "ifttt"
REALTIME_EVENT = "ifttt.realtime"
REALTIME_BATCH = 1000  # IFTTT's limit of entries per Realtime request
DEFAULT_DEBOUNCE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Threshold:
    """A temperature threshold and the direction of the crossing that fires."""

    direction: Direction
    value: float

    @property
    def variant(self) -> str:
        """The canonical name of this threshold's timeline: ``above:20.0``."""
        return f"{self.direction}:{self.value!r}"

    def crossed(self, old: float | None, new: float | None) -> bool:
        """True when a reading moving from ``old`` to ``new`` crosses the threshold."""
        if old is None or new is None:
            return False
        if self.direction == "above":
            return new > self.value >= old
        return new < self.value <= old


@dataclass(frozen=True, slots=True)
class IftttEvent:
    """One event on a trigger timeline; ``uid`` is its permanent IFTTT ``meta.id``."""

    id: int
    uid: str
    tenant_id: str
    device_id: str
    device_name: str
    kind: str
    variant: str
    property: str | None
    old_value: Any
    new_value: Any
    cause: str | None
    source: str | None
    occurred_at: float


@dataclass(frozen=True, slots=True)
class TriggerIdentity:
    """IFTTT's name for one user's trigger with one set of field values.

    ``device_id``, ``kind`` and ``threshold`` say which device changes matter to it, so the
    fan-out can find the identities a change must notify IFTTT about.
    """

    tenant_id: str
    user_id: str
    identity: str
    trigger: str
    fields: Mapping[str, Any]
    device_id: str | None
    kind: str | None
    threshold: Threshold | None
    created_at: float
    last_polled_at: float
    deleted_at: float | None = None


@dataclass(frozen=True, slots=True)
class IftttPruned:
    """What one pruning pass removed."""

    events: int = 0
    identities: int = 0
    thresholds: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        """Rows removed in all."""
        return self.events + self.identities + self.thresholds + self.requests


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """What one committed change adds to the IFTTT timelines, whatever the database."""

    device_id: str
    device_name: str
    kind: str
    property: str | None
    old: Any
    new: Any
    old_number: float | None
    new_number: float | None
    cause: str | None
    source: str | None


def timeline_entry(
    event_type: str, device_id: str | None, payload: Mapping[str, Any]
) -> TimelineEntry | None:
    """The timeline entry of an outbox event, or None when no trigger cares about it."""
    if event_type == "state.changed":
        prop = payload.get("property")
        kind = PROPERTY_KINDS.get(prop) if isinstance(prop, str) else None
        if kind is None:
            return None
        old, new = payload.get("old"), payload.get("new")
    elif event_type == "button.pressed":
        kind, prop, old, new = PRESS_KIND, None, None, payload.get("timestamp")
    else:
        return None
    device = payload.get("device")
    device = device if isinstance(device, Mapping) else {}
    device_id = device_id or device.get("id")
    if not isinstance(device_id, str):
        return None
    return TimelineEntry(
        device_id=device_id,
        device_name=str(device.get("name") or ""),
        kind=kind,
        property=prop,
        old=old,
        new=new,
        old_number=reading_number(old),
        new_number=reading_number(new),
        cause=_text(payload.get("cause")),
        source=_text(payload.get("source")),
    )


def reading_number(value: Any) -> float | None:
    """The number in a reading: a plain number or a temperature's ``value``."""
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
