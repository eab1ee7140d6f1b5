"""DeviceService: create, rename, delete and change the state of devices.

Every change is one store transaction (validate, update with a version bump, activity rows,
outbox rows) and is published on the bus only after it commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from staterelay.core.billing import BillingService
from staterelay.core.bus import EventBus
from staterelay.core.clock import Clock, iso
from staterelay.core.counters import Counters
from staterelay.core.delivery import BUILT_IN_POLICIES, DeliveryPlanner
from staterelay.core.device_types import (
    apply_type_rules,
    default_properties,
    device_type,
    normalize_properties,
    same_room,
    validate_description,
    validate_name,
    validate_options,
    validate_room,
)
from staterelay.core.errors import (
    Forbidden,
    InvalidInput,
    LimitReached,
    NotFound,
    PreconditionFailed,
)
from staterelay.core.events import (
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    OutboxEnqueued,
    PropertyChanged,
    StateChanged,
)
from staterelay.core.ids import ENDPOINT_ID_MAX, decode_cursor, encode_cursor, new_id
from staterelay.core.records import (
    Device,
    DeviceChange,
    DeviceRemoval,
    NewActivity,
    NewOutboxEvent,
    Page,
    Principal,
    PropertyState,
)
from staterelay.core.storage import Store

MAX_DEVICES_PER_TENANT = 300  # Alexa discovers at most 300 endpoints per account
_SCAN_BATCH = 200  # devices read at a time when filtering for a device-scoped key
_DEVICE_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{ENDPOINT_ID_MAX}}}")


def require(principal: Principal, scope: str) -> None:
    """``Forbidden`` unless the principal holds ``scope``."""
    if not principal.can(scope):
        raise Forbidden(f"this credential lacks the {scope!r} scope")


LINKED_APP_CREDENTIALS = frozenset({"oauth"})


def require_account_access(principal: Principal, scope: str) -> None:
    """Like ``require``, and refuse linked apps (Alexa, IFTTT, any OAuth client).

    A linked app may read and change devices; managing the account (API keys, webhooks,
    other linked apps) is for the person, through the dashboard or a personal API key, so
    that unlinking an app leaves nothing of it behind. A device-scoped API key is refused
    too: it was made to touch some devices, not to mint wider keys or read the account.
    """
    if principal.credential in LINKED_APP_CREDENTIALS:
        raise Forbidden("a linked app cannot manage API keys, webhooks or linked apps")
    if principal.device_ids is not None:
        raise Forbidden("a device-scoped API key cannot manage API keys, webhooks or linked apps")
    require(principal, scope)


def require_device(principal: Principal, device_id: str) -> None:
    """``NotFound`` for a device a device-scoped key does not name, as for another tenant's."""
    if not principal.reaches(device_id):
        raise NotFound("no such device")


def require_whole_household(principal: Principal, action: str) -> None:
    """``Forbidden`` for a device-scoped key: ``action`` concerns the household's device set."""
    if principal.device_ids is not None:
        raise Forbidden(f"a device-scoped API key cannot {action}; use an unrestricted key")


def device_summary(device: Device) -> dict[str, Any]:
    """The device fields every event payload carries."""
    return {"id": device.id, "name": device.name, "type": device.type}


class DeviceService:
    """The one way any surface reads or changes devices."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        *,
        max_devices: int = MAX_DEVICES_PER_TENANT,
        counters: Counters | None = None,
        planner: DeliveryPlanner | None = None,
        billing: BillingService | None = None,
    ) -> None:
        self._store = store
        self._billing = billing if billing is not None and billing.enabled else None
        self._bus = bus
        self._clock = clock
        self._max_devices = max_devices
        self._counters = counters if counters is not None else Counters()
        self._plan = (planner or DeliveryPlanner(BUILT_IN_POLICIES)).plan

    async def get(self, principal: Principal, device_id: str) -> Device:
        """One device of the principal's tenant; ``NotFound`` for any other id."""
        require(principal, "read")
        require_device(principal, device_id)
        device = await self._store.get_device(principal.tenant_id, device_id)
        if device is None:
            raise NotFound("no such device")
        return device

    async def list(
        self, principal: Principal, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Device]:
        """The devices the principal reaches, in creation order, a page at a time."""
        require(principal, "read")
        after = decode_cursor("d", cursor)
        items = await _reachable(self._store, principal, after, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        next_cursor = encode_cursor("d", items[-1].seq) if more and items else None
        return Page(items=tuple(items), next_cursor=next_cursor)

    async def create(
        self,
        principal: Principal,
        *,
        type: Any,
        name: Any,
        description: Any = None,
        options: Any = None,
        source: str,
        device_id: str | None = None,
        room: Any = None,
    ) -> Device:
        """Create a device with default state.

        ``device_id`` keeps the id a device had on another instance (``staterelay import``):
        it is the Alexa endpointId, so keeping it keeps voice names and Routines working.
        """
        require(principal, "write")
        require_whole_household(principal, "create devices")
        if device_id is not None and not _DEVICE_ID.fullmatch(device_id):
            raise InvalidInput(
                f"id must be 1 to {ENDPOINT_ID_MAX} letters, digits, '_' or '-'", field="id"
            )
        kind = device_type(type)
        clean_name = validate_name(name)
        clean_description = validate_description(description)
        clean_options = validate_options(kind, options)
        clean_room = await self._household_room(principal, validate_room(room))
        count = await self._store.count_devices(principal.tenant_id)
        if count >= self._max_devices:
            raise LimitReached(f"a household can have at most {self._max_devices} devices")
        if self._billing is not None:
            await self._billing.check_new_device(principal.tenant_id, count)
        now = self._clock()
        device = Device(
            seq=0,
            id=device_id or new_id("dev"),
            tenant_id=principal.tenant_id,
            type=kind.name,
            name=clean_name,
            description=clean_description,
            options=clean_options,
            properties={
                key: PropertyState(value=value, changed_at=now)
                for key, value in default_properties(kind, clean_options).items()
            },
            version=1,
            created_at=now,
            updated_at=now,
            room=clean_room,
        )
        activity = NewActivity(
            kind="device.created",
            source=source,
            actor=principal.actor,
            device_id=device.id,
            device_name=device.name,
            detail={"type": device.type},
        )
        event = NewOutboxEvent(
            event_type="device.created",
            device_id=device.id,
            payload={"device": device_summary(device), "source": source, "timestamp": iso(now)},
        )
        stored, entry, rows = await self._store.create_device(
            device, activity, (event,), plan=self._plan
        )
        self._bus.publish(DeviceAdded(tenant_id=principal.tenant_id, device=stored, activity=entry))
        self._nudge(rows)
        return stored

    async def update(
        self,
        principal: Principal,
        device_id: str,
        *,
        fields: Mapping[str, Any],
        source: str,
        if_version: int | None = None,
    ) -> Device:
        """Rename a device or change its description or options."""
        require(principal, "write")
        require_device(principal, device_id)
        name = validate_name(fields["name"]) if "name" in fields else None
        description = (
            validate_description(fields["description"]) if "description" in fields else None
        )
        room = (
            await self._household_room(principal, validate_room(fields["room"]))
            if "room" in fields
            else None
        )
        now = self._clock()

        def mutate(current: Device) -> DeviceChange:
            _check_version(current, if_version)
            kind = device_type(current.type)
            options = None
            if "options" in fields:
                options = {**current.options, **validate_options(kind, fields["options"])}
                if options == dict(current.options):
                    options = None
            new_name = name if name is not None and name != current.name else None
            new_description = (
                description
                if description is not None and description != current.description
                else None
            )
            new_room = room if room is not None and room != current.room else None
            if (
                new_name is None
                and new_description is None
                and options is None
                and new_room is None
            ):
                return DeviceChange()
            changed = {
                key: value
                for key, value in (
                    ("name", new_name),
                    ("description", new_description),
                    ("options", options),
                    ("room", new_room),
                )
                if value is not None
            }
            summary = {"id": current.id, "name": new_name or current.name, "type": current.type}
            return DeviceChange(
                name=new_name,
                description=new_description,
                options=options,
                room=new_room,
                activity=(
                    NewActivity(
                        kind="device.updated",
                        source=source,
                        actor=principal.actor,
                        device_id=current.id,
                        device_name=new_name or current.name,
                        old_value=current.name if new_name else None,
                        new_value=new_name,
                        detail={"changed": sorted(changed)},
                    ),
                ),
                events=(
                    NewOutboxEvent(
                        event_type="device.updated",
                        device_id=current.id,
                        payload={
                            "device": summary,
                            "changed": sorted(changed),
                            "source": source,
                            "timestamp": iso(now),
                        },
                    ),
                ),
            )

        committed = await self._store.change_device(
            principal.tenant_id, device_id, mutate, now, plan=self._plan
        )
        if committed.activity:
            self._bus.publish(
                DeviceUpdated(
                    tenant_id=principal.tenant_id,
                    before=committed.before,
                    device=committed.after,
                    activity=committed.activity,
                )
            )
            self._nudge(committed.outbox_rows)
        return committed.after

    async def delete(
        self,
        principal: Principal,
        device_id: str,
        *,
        source: str,
        if_version: int | None = None,
    ) -> Device:
        """Delete a device; sinks are told so no ghost device remains anywhere."""
        require(principal, "write")
        require_device(principal, device_id)
        require_whole_household(principal, "delete devices")
        now = self._clock()

        def remove(current: Device) -> DeviceRemoval:
            _check_version(current, if_version)
            activity = NewActivity(
                kind="device.deleted",
                source=source,
                actor=principal.actor,
                device_id=current.id,
                device_name=current.name,
                detail={"type": current.type},
            )
            event = NewOutboxEvent(
                event_type="device.deleted",
                device_id=current.id,
                payload={
                    "device": device_summary(current),
                    "source": source,
                    "timestamp": iso(now),
                },
            )
            return DeviceRemoval(activity=activity, events=(event,))

        device, entry, rows = await self._store.delete_device(
            principal.tenant_id, device_id, remove, now, plan=self._plan
        )
        self._bus.publish(
            DeviceRemoved(tenant_id=principal.tenant_id, device=device, activity=entry)
        )
        self._nudge(rows)
        if self._billing is not None:
            await self._billing.device_removed(principal.tenant_id)
        return device

    async def set_state(
        self,
        principal: Principal,
        device_id: str,
        values: Any | Callable[[Device], Any],
        *,
        source: str,
        cause: str | None = None,
        if_version: int | None = None,
    ) -> Device:
        """Change some of a device's properties; a value equal to the current one is no change.

        ``values`` may be a function of the device as it is inside the write (a toggle, a
        relative step): concurrent changes then each build on the one before, none is lost.
        The type's rules apply to every change (a dimmer at 0 % is off).
        """
        require(principal, "write")
        require_device(principal, device_id)
        if self._billing is not None:
            await self._billing.check_device_active(principal.tenant_id, device_id)
        now = self._clock()

        def mutate(current: Device) -> DeviceChange:
            _check_version(current, if_version)
            kind = device_type(current.type)
            asked = values(current) if callable(values) else values
            present = {key: state.value for key, state in current.properties.items()}
            wanted = apply_type_rules(
                kind, present, normalize_properties(kind, asked, current.options)
            )
            changed = {
                key: value
                for key, value in wanted.items()
                if current.properties.get(key) is None or current.properties[key].value != value
            }
            if not changed:
                return DeviceChange()
            activity = []
            events = []
            for key, value in changed.items():
                old = current.properties[key].value if key in current.properties else None
                activity.append(
                    NewActivity(
                        kind="state",
                        source=source,
                        actor=principal.actor,
                        cause=cause,
                        property=key,
                        old_value=old,
                        new_value=value,
                        device_id=current.id,
                        device_name=current.name,
                    )
                )
                events.append(
                    NewOutboxEvent(
                        event_type="state.changed",
                        device_id=current.id,
                        payload={
                            "device": device_summary(current),
                            "property": key,
                            "old": old,
                            "new": value,
                            "cause": cause,
                            "source": source,
                            "version": current.version + 1,
                            "timestamp": iso(now),
                        },
                    )
                )
            return DeviceChange(properties=changed, activity=tuple(activity), events=tuple(events))

        committed = await self._store.change_device(
            principal.tenant_id, device_id, mutate, now, plan=self._plan
        )
        if committed.activity:
            changes = tuple(
                PropertyChanged(
                    name=key,
                    old=committed.before.properties[key].value
                    if key in committed.before.properties
                    else None,
                    new=committed.after.properties[key].value,
                )
                for key in committed.after.properties
                if key not in committed.before.properties
                or committed.before.properties[key].value != committed.after.properties[key].value
            )
            self._bus.publish(
                StateChanged(
                    tenant_id=principal.tenant_id,
                    device=committed.after,
                    changes=changes,
                    source=source,
                    cause=cause,
                    actor=principal.actor,
                    activity=committed.activity,
                )
            )
            self._counters.state_changed(source)
            if self._billing is not None:
                self._billing.usage.state_changed(principal.tenant_id)
            self._nudge(committed.outbox_rows)
        return committed.after

    async def press(
        self, principal: Principal, device_id: str, *, source: str, cause: str | None = None
    ) -> Device:
        """Press a button: always an event, and only the press time is kept."""
        require(principal, "write")
        require_device(principal, device_id)
        if self._billing is not None:
            await self._billing.check_device_active(principal.tenant_id, device_id)
        now = self._clock()

        def mutate(current: Device) -> DeviceChange:
            if device_type(current.type).name != "button":
                raise_not_button(current)
            old = current.properties.get("last_pressed_at")
            return DeviceChange(
                properties={"last_pressed_at": iso(now)},
                activity=(
                    NewActivity(
                        kind="press",
                        source=source,
                        actor=principal.actor,
                        cause=cause,
                        property="last_pressed_at",
                        old_value=old.value if old else None,
                        new_value=iso(now),
                        device_id=current.id,
                        device_name=current.name,
                    ),
                ),
                events=(
                    NewOutboxEvent(
                        event_type="button.pressed",
                        device_id=current.id,
                        payload={
                            "device": device_summary(current),
                            "cause": cause,
                            "source": source,
                            "version": current.version + 1,
                            "timestamp": iso(now),
                        },
                    ),
                ),
            )

        committed = await self._store.change_device(
            principal.tenant_id, device_id, mutate, now, plan=self._plan
        )
        old_press = committed.before.properties.get("last_pressed_at")
        self._bus.publish(
            StateChanged(
                tenant_id=principal.tenant_id,
                device=committed.after,
                changes=(
                    PropertyChanged(
                        name="last_pressed_at",
                        old=old_press.value if old_press else None,
                        new=committed.after.properties["last_pressed_at"].value,
                    ),
                ),
                source=source,
                cause=cause,
                actor=principal.actor,
                activity=committed.activity,
                pressed=True,
            )
        )
        self._counters.state_changed(source)
        if self._billing is not None:
            self._billing.usage.state_changed(principal.tenant_id)
        self._nudge(committed.outbox_rows)
        return committed.after

    async def rooms(self, principal: Principal) -> Sequence[str]:
        """The rooms of the household's devices, sorted (the list forms suggest)."""
        require(principal, "read")
        found = {device.room for device in await self._all(principal) if device.room}
        return sorted(found, key=str.casefold)

    async def _household_room(self, principal: Principal, room: str) -> str:
        """``room`` in the spelling the household already uses for it."""
        if not room:
            return room
        return same_room(room, await self.rooms(principal))

    async def _all(self, principal: Principal) -> Sequence[Device]:
        devices: Sequence[Device] = ()
        after: int | None = None
        while True:
            batch = await _reachable(self._store, principal, after, _SCAN_BATCH)
            devices = (*devices, *batch)
            if len(batch) < _SCAN_BATCH:
                return devices
            after = batch[-1].seq

    def _nudge(self, rows: int) -> None:
        if rows:
            self._bus.publish(OutboxEnqueued(rows=rows))


async def _reachable(
    store: Store, principal: Principal, after: int | None, count: int
) -> list[Device]:
    """Up to ``count`` devices after ``after`` that the principal reaches, in order."""
    tenant_id = principal.tenant_id
    if principal.device_ids is None:
        return list(await store.list_devices(tenant_id, after_seq=after, limit=count))
    found: list[Device] = []
    while len(found) < count:
        batch = await store.list_devices(tenant_id, after_seq=after, limit=_SCAN_BATCH)
        found.extend(device for device in batch if principal.reaches(device.id))
        if len(batch) < _SCAN_BATCH:
            break
        after = batch[-1].seq
    return found[:count]


def raise_not_button(device: Device) -> None:
    """Only buttons can be pressed."""
    raise InvalidInput(f"a {device.type} cannot be pressed; only buttons can")


def _check_version(current: Device, if_version: int | None) -> None:
    if if_version is not None and current.version != if_version:
        raise PreconditionFailed(f"the device is at version {current.version}, not {if_version}")
