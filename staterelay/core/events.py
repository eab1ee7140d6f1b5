"""Domain events, published on the bus only after the transaction that caused them commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from staterelay.core.records import ActivityEntry, Device
from staterelay.core.records.quick_init import quick_init


@quick_init
@dataclass(frozen=True, slots=True)
class PropertyChanged:
    """One property's transition."""

    name: str
    old: Any
    new: Any


@quick_init
@dataclass(frozen=True, slots=True)
class StateChanged:
    """A device's properties changed (or a button was pressed)."""

    tenant_id: str
    device: Device
    changes: tuple[PropertyChanged, ...]
    source: str
    cause: str | None
    actor: str | None
    activity: tuple[ActivityEntry, ...]
    pressed: bool = False


@quick_init
@dataclass(frozen=True, slots=True)
class DeviceAdded:
    """A device was created."""

    tenant_id: str
    device: Device
    activity: ActivityEntry


@quick_init
@dataclass(frozen=True, slots=True)
class DeviceUpdated:
    """A device's name, description or options changed."""

    tenant_id: str
    before: Device
    device: Device
    activity: tuple[ActivityEntry, ...]


@quick_init
@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    """A device was deleted."""

    tenant_id: str
    device: Device
    activity: ActivityEntry


@quick_init
@dataclass(frozen=True, slots=True)
class ActivityRecorded:
    """Activity rows written outside a device change (delivery results)."""

    tenant_id: str
    activity: tuple[ActivityEntry, ...] = field(default_factory=tuple)


@quick_init
@dataclass(frozen=True, slots=True)
class OutboxEnqueued:
    """New outbox rows are waiting; wakes the dispatcher."""

    rows: int


Event = (
    StateChanged | DeviceAdded | DeviceUpdated | DeviceRemoved | ActivityRecorded | OutboxEnqueued
)
