"""A compact, versioned JSON form of bus events, for passing them between processes.

An envelope is ``{"v": 1, "o": origin, "t": type, "e": fields}``: records (``Device``,
``ActivityEntry``, ``PropertyChanged``) become objects keyed by field name. Decoding ignores
fields it does not know, so a replica can read events from a newer one that added a field
with a default; a newer envelope version is refused with ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from staterelay.core.events import (
    ActivityRecorded,
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    Event,
    OutboxEnqueued,
    PropertyChanged,
    StateChanged,
)
from staterelay.core.records import ActivityEntry, Device, PropertyState

VERSION: Final = 1

RELAYED_EVENTS: Final[tuple[type[Any], ...]] = (
    StateChanged,
    DeviceAdded,
    DeviceUpdated,
    DeviceRemoved,
    ActivityRecorded,
    OutboxEnqueued,
)
_BY_NAME: Final = {kind.__name__: kind for kind in RELAYED_EVENTS}


def encode_event(event: Event, origin: str) -> bytes:
    """The envelope of ``event`` sent by the process ``origin``, as UTF-8 JSON."""
    kind = type(event)
    if kind not in RELAYED_EVENTS:
        raise TypeError(f"{kind.__name__} is not an event the codec carries")
    envelope = {"v": VERSION, "o": origin, "t": kind.__name__, "e": _plain(event)}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def decode_event(data: bytes | str) -> tuple[str, Event]:
    """``(origin, event)`` from an envelope; ``ValueError`` for anything malformed."""
    try:
        envelope = json.loads(data)
        version, origin, name, fields = (envelope[k] for k in ("v", "o", "t", "e"))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not an event envelope: {exc}") from None
    if version != VERSION:
        raise ValueError(f"event envelope version {version!r}; this version reads {VERSION}")
    kind = _BY_NAME.get(name) if isinstance(name, str) else None
    if kind is None or not isinstance(fields, dict) or not isinstance(origin, str):
        raise ValueError(f"unknown event type {name!r}")
    try:
        event: Event = _DECODERS[kind](fields)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed {name}: {exc!r}") from None
    return origin, event


def _plain(value: Any) -> Any:
    """Records as field-name objects, mappings as objects, tuples as arrays."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _record(kind: type[Any], fields: Mapping[str, Any], **converted: Any) -> Any:
    """``kind`` from the fields it knows, with some replaced by already converted values."""
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in fields.items() if k in known}, **converted)


def _device(fields: Mapping[str, Any]) -> Device:
    properties = {
        name: _record(PropertyState, state) for name, state in fields["properties"].items()
    }
    device: Device = _record(
        Device,
        {k: v for k, v in fields.items() if k != "properties"},
        properties=properties,
    )
    return device


def _activity(fields: Mapping[str, Any]) -> ActivityEntry:
    entry: ActivityEntry = _record(ActivityEntry, fields)
    return entry


def _activities(items: list[Mapping[str, Any]]) -> tuple[ActivityEntry, ...]:
    return tuple(_activity(item) for item in items)


def _state_changed(f: Mapping[str, Any]) -> StateChanged:
    changes = tuple(_record(PropertyChanged, change) for change in f["changes"])
    event: StateChanged = _record(
        StateChanged,
        {k: v for k, v in f.items() if k not in ("device", "changes", "activity")},
        device=_device(f["device"]),
        changes=changes,
        activity=_activities(f["activity"]),
    )
    return event


def _device_added(f: Mapping[str, Any]) -> DeviceAdded:
    return DeviceAdded(f["tenant_id"], _device(f["device"]), _activity(f["activity"]))


def _device_updated(f: Mapping[str, Any]) -> DeviceUpdated:
    return DeviceUpdated(
        f["tenant_id"], _device(f["before"]), _device(f["device"]), _activities(f["activity"])
    )


def _device_removed(f: Mapping[str, Any]) -> DeviceRemoved:
    return DeviceRemoved(f["tenant_id"], _device(f["device"]), _activity(f["activity"]))


def _activity_recorded(f: Mapping[str, Any]) -> ActivityRecorded:
    return ActivityRecorded(f["tenant_id"], _activities(f["activity"]))


def _outbox_enqueued(f: Mapping[str, Any]) -> OutboxEnqueued:
    return OutboxEnqueued(int(f["rows"]))


_DECODERS: Final[dict[type[Any], Callable[[Mapping[str, Any]], Any]]] = {
    StateChanged: _state_changed,
    DeviceAdded: _device_added,
    DeviceUpdated: _device_updated,
    DeviceRemoved: _device_removed,
    ActivityRecorded: _activity_recorded,
    OutboxEnqueued: _outbox_enqueued,
}
