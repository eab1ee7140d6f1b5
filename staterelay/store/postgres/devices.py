"""Devices on PostgreSQL: reads and changes in one round trip each, and their deliveries.

A change is planned from the device and the household's interest facts as this process last
saw them, and sent whole to ``sr_apply_change``, which refuses it (writing nothing) when the
device's version or the facts' version moved, answering the current ones; the change is
then planned again from those. Changes of one device within this process queue behind each
other, so they rarely meet a stale device. A read is ``sr_get_device``, or one item of an
``sr_get_devices`` call with the reads asked for alongside it (``batching``).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from staterelay.core.delivery import DeviceFacts, InterestFacts, Planner
from staterelay.core.errors import Conflict, NotFound, StateRelayError
from staterelay.core.keyed_locks import KeyedLocks
from staterelay.core.records import (
    ActivityEntry,
    CommittedChange,
    Device,
    DeviceChange,
    DeviceMutator,
    DeviceRemover,
    NewActivity,
    NewOutboxEvent,
    PropertyState,
)
from staterelay.store.postgres.batching import DeviceReads
from staterelay.store.postgres.delivery import activity_json, device_from, facts_from, plan_json
from staterelay.store.postgres.engine import PostgresEngine, dumps
from staterelay.store.postgres.outbox import insert_activity_row

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

REMEMBERED: Final = 4096  # devices and households remembered (the oldest go first)
ATTEMPTS: Final = 5  # plans made again after meeting a stale device or stale facts


class PostgresDevices:
    """The device part of ``Store`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

    def _init_devices(self) -> None:
        self._devices: OrderedDict[tuple[str, str], Device] = OrderedDict()
        self._facts: OrderedDict[str, InterestFacts] = OrderedDict()
        # Changes of one device queue here, in this process, so they rarely meet a stale
        # device; across replicas the version check in sr_apply_change orders them.
        self._device_turns: KeyedLocks[tuple[str, str]] = KeyedLocks()
        self._device_reads = DeviceReads(self.engine)

    # reads ---------------------------------------------------------------------------------
    async def get_device(self, tenant_id: str, device_id: str) -> Device | None:
        """One device, in one round trip (shared with the reads asked for alongside it)."""
        data = await self._device_reads.read(tenant_id, device_id)
        if data is None:
            self._devices.pop((tenant_id, device_id), None)
            return None
        device = device_from(data)
        self._remember(device)
        return device

    async def interest_facts(self, tenant_id: str) -> InterestFacts:
        """The household's interest facts, read now."""
        async with self.engine.statement() as conn:
            facts = facts_from(await conn.fetchval("SELECT sr_interest_facts($1)", tenant_id))
        self._remember_facts(tenant_id, facts)
        return facts

    # changes -------------------------------------------------------------------------------
    async def change_device(
        self, tenant_id: str, device_id: str, mutate: DeviceMutator, now: float, *, plan: Planner
    ) -> CommittedChange:
        """Mutate and write a device and queue what the change owes, in one round trip."""
        async with self._device_turns.hold((tenant_id, device_id)):
            device = self._devices.get((tenant_id, device_id))
            facts = self._facts.get(tenant_id)
            fresh = False
            if device is None or facts is None:
                device, facts = await self._context(tenant_id, device_id)
                fresh = True
            for _ in range(ATTEMPTS):
                try:
                    change = mutate(device)
                except StateRelayError:
                    if fresh:
                        raise
                    # Judged on what this process remembered: judge again on the current.
                    device = await self._current(tenant_id, device_id)
                    fresh = True
                    continue
                if change.is_empty:
                    if fresh:
                        return CommittedChange(
                            before=device, after=device, activity=(), outbox_rows=0
                        )
                    device = await self._current(tenant_id, device_id)
                    fresh = True
                    continue
                after = _after(device, change, now)
                planned = plan(change.events, facts, _facts_of(after), now)
                answer = await self._apply(device, after, change, facts, planned_json(planned), now)
                status = answer["status"]
                if status == "ok":
                    self._remember(after)
                    ids = sorted(int(i) for i in answer["activity_ids"])
                    entries = tuple(
                        activity.stored(entry_id=activity_id, tenant_id=tenant_id, at=now)
                        for activity, activity_id in zip(change.activity, ids, strict=True)
                    )
                    return CommittedChange(
                        before=device,
                        after=after,
                        activity=entries,
                        outbox_rows=int(answer["rows"]),
                    )
                if status == "missing":
                    self._devices.pop((tenant_id, device_id), None)
                    raise NotFound("no such device")
                device, facts = device_from(answer["device"]), facts_from(answer["facts"])
                self._remember(device)
                self._remember_facts(tenant_id, facts)
                fresh = True
            raise Conflict("the device kept changing while this change was applied; try again")

    async def _apply(
        self,
        before: Device,
        after: Device,
        change: DeviceChange,
        facts: InterestFacts,
        planned: dict[str, Any],
        now: float,
    ) -> dict[str, Any]:
        request = {
            "tenant": before.tenant_id,
            "device": before.id,
            "expected_version": before.version,
            "version": after.version,
            "facts_version": facts.version,
            "now": now,
            "properties": dict(change.properties),
            "name": change.name,
            "name_key": None if change.name is None else change.name.casefold(),
            "description": change.description,
            "options": None if change.options is None else dict(change.options),
            "room": change.room,
            "activity": [activity_json(activity) for activity in change.activity],
            **planned,
        }
        try:
            async with self.engine.statement() as conn:
                answer: dict[str, Any] = await conn.fetchval("SELECT sr_apply_change($1)", request)
        except asyncpg.UniqueViolationError:
            raise Conflict("a device with this name exists", field="name") from None
        return answer

    async def _current(self, tenant_id: str, device_id: str) -> Device:
        """The device as it is now, for a change judged on a remembered one.

        The remembered facts stay: ``sr_apply_change`` refuses a plan made from stale facts
        and answers the current ones.
        """
        device = await self.get_device(tenant_id, device_id)
        if device is None:
            raise NotFound("no such device")
        return device

    async def _context(self, tenant_id: str, device_id: str) -> tuple[Device, InterestFacts]:
        """The current device and facts, in one round trip."""
        async with self.engine.statement() as conn:
            data = await conn.fetchval("SELECT sr_change_context($1, $2)", tenant_id, device_id)
        facts = facts_from(data["facts"])
        self._remember_facts(tenant_id, facts)
        if data["device"] is None:
            self._devices.pop((tenant_id, device_id), None)
            raise NotFound("no such device")
        device = device_from(data["device"])
        self._remember(device)
        return device, facts

    async def create_device(
        self,
        device: Device,
        activity: NewActivity,
        events: Sequence[NewOutboxEvent],
        *,
        plan: Planner,
    ) -> tuple[Device, ActivityEntry, int]:
        """Insert a device with its properties, log it and queue what its events owe."""
        async with self.engine.tenant(device.tenant_id) as conn:
            try:
                seq = await conn.fetchval(
                    "INSERT INTO devices (id, tenant_id, type, name, name_key, description,"
                    " options, version, created_at, updated_at, room)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
                    device.id,
                    device.tenant_id,
                    device.type,
                    device.name,
                    device.name.casefold(),
                    device.description,
                    dict(device.options),
                    device.version,
                    device.created_at,
                    device.updated_at,
                    device.room,
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "devices_name_unique":
                    raise Conflict("a device with this name exists", field="name") from None
                raise Conflict("a device with this id exists", field="id") from None
            if device.properties:
                await conn.executemany(
                    # The value goes as JSON text: asyncpg sends None as SQL NULL, not as
                    # JSON null (a new button has no last press yet).
                    "INSERT INTO device_properties (tenant_id, device_id, name, value,"
                    " changed_at) VALUES ($1, $2, $3, $4::text::jsonb, $5)",
                    [
                        (device.tenant_id, device.id, name, dumps(p.value), p.changed_at)
                        for name, p in device.properties.items()
                    ],
                )
            stored = dataclasses.replace(device, seq=int(seq))
            entry = await _insert_activity(conn, device.tenant_id, activity, device.created_at)
            rows = await _deliver(
                conn, device.tenant_id, events, _facts_of(stored), device.created_at, plan
            )
        self._remember(stored)
        return stored, entry, rows

    async def delete_device(
        self,
        tenant_id: str,
        device_id: str,
        remove: DeviceRemover,
        now: float,
        *,
        plan: Planner,
    ) -> tuple[Device, ActivityEntry, int]:
        """Delete a device as ``remove`` decides, log it and queue what it owes."""
        async with self.engine.tenant(tenant_id) as conn:
            if not await conn.fetchval(
                "SELECT true FROM devices WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                tenant_id,
                device_id,
            ):
                raise NotFound("no such device")
            data = await conn.fetchval("SELECT sr_device_of($1, $2)", tenant_id, device_id)
            device = device_from(data)
            removal = remove(device)
            await conn.execute(
                "DELETE FROM devices WHERE tenant_id = $1 AND id = $2", tenant_id, device_id
            )
            entry = await _insert_activity(conn, tenant_id, removal.activity, now)
            gone = DeviceFacts(device_id=device_id, type=None, options={}, version=None)
            rows = await _deliver(conn, tenant_id, removal.events, gone, now, plan)
        self._devices.pop((tenant_id, device_id), None)
        return device, entry, rows

    async def enqueue_events(
        self, tenant_id: str, events: Sequence[NewOutboxEvent], now: float, *, plan: Planner
    ) -> int:
        """Queue what events outside a device change owe (a webhook's test send)."""
        none = DeviceFacts(device_id="", type=None, options={}, version=None)
        async with self.engine.tenant(tenant_id) as conn:
            return await _deliver(conn, tenant_id, events, none, now, plan)

    # memory --------------------------------------------------------------------------------
    def _remember(self, device: Device) -> None:
        key = (device.tenant_id, device.id)
        self._devices[key] = device
        self._devices.move_to_end(key)
        while len(self._devices) > REMEMBERED:
            self._devices.popitem(last=False)

    def _remember_facts(self, tenant_id: str, facts: InterestFacts) -> None:
        self._facts[tenant_id] = facts
        self._facts.move_to_end(tenant_id)
        while len(self._facts) > REMEMBERED:
            self._facts.popitem(last=False)

    def forget_interest(self) -> None:
        """Forget every household's facts (the instance's Realtime settings changed)."""
        self._facts.clear()


def planned_json(planned: Any) -> dict[str, Any]:
    """The plan as ``sr_apply_change`` takes it."""
    return plan_json(planned)


async def _deliver(
    conn: Connection,
    tenant_id: str,
    events: Sequence[NewOutboxEvent],
    device: DeviceFacts,
    now: float,
    plan: Planner,
) -> int:
    """Plan (core's rules) and queue what ``events`` owe, inside the caller's transaction."""
    if not events:
        return 0
    facts = facts_from(await conn.fetchval("SELECT sr_interest_facts_of($1)", tenant_id))
    planned = plan_json(plan(events, facts, device, now))
    await conn.execute("SELECT sr_append_timeline($1, $2, $3)", tenant_id, planned["timeline"], now)
    return int(
        await conn.fetchval("SELECT sr_queue_rows($1, $2, $3)", tenant_id, planned["rows"], now)
    )


def _after(before: Device, change: DeviceChange, now: float) -> Device:
    properties = dict(before.properties)
    for name, value in change.properties.items():
        properties[name] = PropertyState(value=value, changed_at=now)
    return dataclasses.replace(
        before,
        name=before.name if change.name is None else change.name,
        description=before.description if change.description is None else change.description,
        options=before.options if change.options is None else dict(change.options),
        room=before.room if change.room is None else change.room,
        properties=properties,
        version=before.version + 1,
        updated_at=now,
    )


def _facts_of(device: Device) -> DeviceFacts:
    return DeviceFacts(
        device_id=device.id,
        type=device.type,
        options=device.options,
        version=device.version,
        tenant_id=device.tenant_id,
    )


async def _insert_activity(
    conn: Connection, tenant_id: str, activity: NewActivity, at: float
) -> ActivityEntry:
    activity_id, _ = await insert_activity_row(conn, tenant_id, activity, at)
    return activity.stored(entry_id=activity_id, tenant_id=tenant_id, at=at)
