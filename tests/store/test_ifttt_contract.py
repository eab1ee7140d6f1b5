"""The IFTTT part of the store contract: timelines filled by the fan-out, thresholds,
identities, Realtime rows, request ids, pruning and the webhook format columns."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from staterelay.core.records import (
    DeliveryOutcome,
    Device,
    DeviceChange,
    NewActivity,
    NewOutboxEvent,
    PropertyState,
    User,
)
from staterelay.core.records.ifttt import (
    REALTIME_BATCH,
    Threshold,
    TriggerIdentity,
)
from staterelay.store import Store
from tests.store.outbox_rows import OutboxRow, outbox_rows, record_on_disk
from tests.store.planning import PLAN, link_ifttt
from tests.store.test_contract import NOW, created, hook, tenant_with_user

ABOVE_20 = Threshold("above", 20.0)
BELOW_20 = Threshold("below", 20.0)


def device(tenant_id: str, device_id: str, kind: str = "switch", **properties: Any) -> Device:
    """A device record of ``kind``."""
    return Device(
        seq=0,
        id=device_id,
        tenant_id=tenant_id,
        type=kind,
        name=f"Device {device_id}",
        description="",
        options={},
        properties={k: PropertyState(v, NOW) for k, v in properties.items()},
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def changed(current: Device, prop: str, old: Any, new: Any) -> DeviceChange:
    """A state change as DeviceService writes it: property, activity row, event."""
    return DeviceChange(
        properties={prop: new},
        activity=(NewActivity(kind="state", source="api", actor="t", property=prop),),
        events=(
            NewOutboxEvent(
                event_type="state.changed",
                device_id=current.id,
                payload={
                    "device": {"id": current.id, "name": current.name, "type": current.type},
                    "property": prop,
                    "old": old,
                    "new": new,
                    "cause": "test",
                    "source": "api",
                    "version": current.version + 1,
                    "timestamp": "2027-01-15T08:00:00.000Z",
                },
            ),
        ),
    )


async def change(
    store: Store, tenant_id: str, device_id: str, prop: str, new: Any, at: float
) -> int:
    """Set one property; returns the outbox rows the change wrote."""

    def mutate(current: Device) -> DeviceChange:
        return changed(current, prop, current.properties[prop].value, new)

    return (await store.change_device(tenant_id, device_id, mutate, at, plan=PLAN)).outbox_rows


async def press(store: Store, tenant_id: str, device_id: str, at: float) -> None:
    """Press a button."""

    def mutate(current: Device) -> DeviceChange:
        return DeviceChange(
            properties={"last_pressed_at": str(at)},
            activity=(NewActivity(kind="press", source="api", actor="t"),),
            events=(
                NewOutboxEvent(
                    event_type="button.pressed",
                    device_id=current.id,
                    payload={"device": {"id": current.id, "name": current.name}, "timestamp": "t"},
                ),
            ),
        )

    await store.change_device(tenant_id, device_id, mutate, at, plan=PLAN)


def identity(
    tenant_id: str,
    user_id: str,
    name: str,
    device_id: str,
    kind: str = "power",
    threshold: Threshold | None = None,
    at: float = NOW,
) -> TriggerIdentity:
    """A trigger identity record."""
    return TriggerIdentity(
        tenant_id=tenant_id,
        user_id=user_id,
        identity=name,
        trigger="temperature_crossed_threshold" if threshold else "power_changed",
        fields={"device": device_id},
        device_id=device_id,
        kind=kind,
        threshold=threshold,
        created_at=at,
        last_polled_at=at,
    )


async def realtime_rows(store: Store, at: float = NOW + 10**6) -> list[OutboxRow]:
    """Every pending ``ifttt`` row due by ``at`` (the far future by default), oldest first."""
    return [r for r in await outbox_rows(store) if r.sink == "ifttt" and r.next_attempt_at <= at]


@pytest.fixture
async def home(store: Store) -> tuple[str, str]:
    """A tenant and user with a switch, a dimmer, a thermometer, a door sensor and a button."""
    tenant, user = await tenant_with_user(store, "a")
    for made in (
        device(tenant.id, "dev_sw", power="OFF"),
        device(tenant.id, "dev_dim", "dimmer", power="OFF", brightness=100),
        device(
            tenant.id,
            "dev_th",
            "temperature_sensor",
            temperature={"value": 20.0, "scale": "CELSIUS"},
        ),
        device(tenant.id, "dev_door", "contact_sensor", detection="NOT_DETECTED"),
        device(tenant.id, "dev_btn", "button", last_pressed_at="2027-01-01T00:00:00.000Z"),
    ):
        await store.create_device(made, created(made), (), plan=PLAN)
    await store.configure_ifttt_realtime(enabled=True, debounce_seconds=1.0, now=NOW)
    await link_ifttt(store, tenant.id, user.id, NOW)
    return tenant.id, user.id


def temp(value: float) -> dict[str, Any]:
    """A temperature reading."""
    return {"value": value, "scale": "CELSIUS"}


async def test_every_change_is_appended_to_its_timeline(
    store: Store, home: tuple[str, str]
) -> None:
    """Power, brightness, sensor readings and presses each land on their kind's timeline,
    newest first, with old and new values, cause, source, name and time; other events
    (device.created, properties without a trigger) write nothing."""
    tenant, _ = home
    await change(store, tenant, "dev_sw", "power", "ON", NOW + 1)
    await change(store, tenant, "dev_sw", "power", "OFF", NOW + 2)
    await change(store, tenant, "dev_dim", "brightness", 40, NOW + 3)
    await change(store, tenant, "dev_th", "temperature", temp(21.5), NOW + 4)
    await change(store, tenant, "dev_door", "detection", "DETECTED", NOW + 5)
    await press(store, tenant, "dev_btn", NOW + 6)
    power = await store.list_ifttt_events(tenant, "dev_sw", "power", "", limit=10)
    assert [(e.old_value, e.new_value, e.occurred_at) for e in power] == [
        ("ON", "OFF", NOW + 2),
        ("OFF", "ON", NOW + 1),
    ]
    assert power[0].device_name == "Device dev_sw"
    assert (power[0].cause, power[0].source, power[0].property) == ("test", "api", "power")
    [level] = await store.list_ifttt_events(tenant, "dev_dim", "brightness", "", limit=10)
    assert (level.old_value, level.new_value) == (100, 40)
    [reading] = await store.list_ifttt_events(tenant, "dev_th", "sensor", "", limit=10)
    assert reading.new_value == temp(21.5)
    [door] = await store.list_ifttt_events(tenant, "dev_door", "sensor", "", limit=10)
    assert door.new_value == "DETECTED"
    assert len(await store.list_ifttt_events(tenant, "dev_btn", "press", "", limit=10)) == 1
    assert await store.list_ifttt_events(tenant, "dev_sw", "sensor", "", limit=10) == []
    uids = [e.uid for e in power]
    assert len(set(uids)) == 2
    assert await store.list_ifttt_events(tenant, "dev_sw", "power", "", limit=0) == []
    assert [
        e.uid for e in await store.list_ifttt_events(tenant, "dev_sw", "power", "", limit=1)
    ] == uids[:1]


async def test_a_household_without_ifttt_keeps_no_timeline_until_it_links(
    store: Store,
) -> None:
    """Changes of a household that never linked IFTTT write no timeline rows (nothing would
    read them); once it links, its next change is on the timeline, and unlinking (revoking
    the grant) stops them again."""
    tenant, user = await tenant_with_user(store, "solo")
    made = device(tenant.id, "dev_sw", power="OFF")
    await store.create_device(made, created(made), (), plan=PLAN)
    await change(store, tenant.id, "dev_sw", "power", "ON", NOW + 1)
    assert await store.list_ifttt_events(tenant.id, "dev_sw", "power", "", limit=10) == []
    await link_ifttt(store, tenant.id, user.id, NOW + 2)
    await change(store, tenant.id, "dev_sw", "power", "OFF", NOW + 3)
    [first] = await store.list_ifttt_events(tenant.id, "dev_sw", "power", "", limit=10)
    assert (first.old_value, first.new_value) == ("ON", "OFF")
    grant_id = f"grt_ifttt_{tenant.id}_{user.id}"
    assert await store.revoke_oauth_grant(tenant.id, grant_id, NOW + 4, reason="unlinked")
    await change(store, tenant.id, "dev_sw", "power", "ON", NOW + 5)
    assert len(await store.list_ifttt_events(tenant.id, "dev_sw", "power", "", limit=10)) == 1


async def test_timelines_never_cross_tenants(store: Store, home: tuple[str, str]) -> None:
    """Another tenant asking for the same device id reads nothing."""
    tenant, _ = home
    other, _ = await tenant_with_user(store, "b")
    await change(store, tenant, "dev_sw", "power", "ON", NOW + 1)
    assert await store.list_ifttt_events(other.id, "dev_sw", "power", "", limit=10) == []


async def test_tracked_thresholds_record_crossings_and_backfill(
    store: Store, home: tuple[str, str]
) -> None:
    """A newly tracked threshold gets the crossings already recorded; later crossings are
    written by the fan-out; staying above never crosses; tracking again adds nothing."""
    tenant, _ = home
    for n, value in enumerate((18.0, 22.0, 25.0, 19.0)):
        await change(store, tenant, "dev_th", "temperature", temp(value), NOW + n)
    assert await store.track_ifttt_threshold(tenant, "dev_th", ABOVE_20, NOW + 10, limit=9) == 1
    assert await store.track_ifttt_threshold(tenant, "dev_th", BELOW_20, NOW + 10, limit=9) == 2
    assert await store.track_ifttt_threshold(tenant, "dev_th", ABOVE_20, NOW + 11, limit=9) == 0
    for n, value in enumerate((21.0, 24.0, 20.0)):
        await change(store, tenant, "dev_th", "temperature", temp(value), NOW + 20 + n)
    above = await store.list_ifttt_events(tenant, "dev_th", "sensor", ABOVE_20.variant, limit=10)
    assert [(e.old_value["value"], e.new_value["value"]) for e in above] == [
        (19.0, 21.0),
        (18.0, 22.0),
    ]
    assert above[1].occurred_at == NOW + 1  # the backfilled crossing keeps its time
    below = await store.list_ifttt_events(tenant, "dev_th", "sensor", BELOW_20.variant, limit=10)
    assert [(e.old_value["value"], e.new_value["value"]) for e in below] == [
        (25.0, 19.0),
        (20.0, 18.0),
    ]
    readings = await store.list_ifttt_events(tenant, "dev_th", "sensor", "", limit=100)
    assert len(readings) == 7
    assert not {e.uid for e in above} & {e.uid for e in readings}


async def test_identities_upsert_soft_delete_and_come_back(
    store: Store, home: tuple[str, str]
) -> None:
    """Saving refreshes fields and last poll; deleting is soft and reports whether it did
    anything; saving again undeletes; identities are per user."""
    tenant, user = home
    await store.save_ifttt_identity(identity(tenant, user, "ti", "dev_sw"))
    moved = dataclasses.replace(
        identity(tenant, user, "ti", "dev_dim"), created_at=NOW + 5, last_polled_at=NOW + 5
    )
    await store.save_ifttt_identity(moved)
    [stored] = await store.list_ifttt_identities(tenant, user)
    assert (stored.device_id, stored.created_at, stored.last_polled_at) == ("dev_dim", NOW, NOW + 5)
    assert await store.delete_ifttt_identity(tenant, user, "ti", NOW + 6)
    assert not await store.delete_ifttt_identity(tenant, user, "ti", NOW + 7)
    assert not await store.delete_ifttt_identity(tenant, "usr_other", "ti", NOW + 7)
    [gone] = await store.list_ifttt_identities(tenant)
    assert gone.deleted_at == NOW + 6
    await store.save_ifttt_identity(moved)
    [back] = await store.list_ifttt_identities(tenant, user)
    assert back.deleted_at is None
    threshold = identity(tenant, user, "ti-t", "dev_th", "sensor", ABOVE_20)
    await store.save_ifttt_identity(threshold)
    stored_threshold = (await store.list_ifttt_identities(tenant, user))[1]
    assert stored_threshold.threshold == ABOVE_20


async def test_changes_watched_by_identities_queue_coalesced_realtime_rows(
    store: Store, home: tuple[str, str]
) -> None:
    """A change watched by live identities queues one row per device, due at the end of
    its debounce window; later changes in the window join it; deleted identities, other
    kinds and other devices do not count; after the window a new row starts."""
    tenant, user = home
    for name, device_id in (("ti-1", "dev_sw"), ("ti-2", "dev_sw"), ("ti-dim", "dev_dim")):
        await store.save_ifttt_identity(identity(tenant, user, name, device_id))
    await store.save_ifttt_identity(identity(tenant, user, "ti-del", "dev_sw"))
    await store.delete_ifttt_identity(tenant, user, "ti-del", NOW)
    await store.save_ifttt_identity(identity(tenant, user, "ti-bright", "dev_dim", "brightness"))
    start = NOW + 0.25
    assert await change(store, tenant, "dev_sw", "power", "ON", start) == 1
    assert await change(store, tenant, "dev_sw", "power", "OFF", start + 0.5) == 0
    assert await change(store, tenant, "dev_dim", "brightness", 10, start + 0.6) == 1
    assert await change(store, tenant, "dev_door", "detection", "DETECTED", start + 0.6) == 0
    assert await realtime_rows(store, NOW + 0.99) == []
    rows = await realtime_rows(store, NOW + 1.0)
    assert {(r.destination, tuple(r.payload["trigger_identities"])) for r in rows} == {
        ("dev_sw", ("ti-1", "ti-2")),
        ("dev_dim", ("ti-bright",)),
    }
    assert rows[0].event_type == "ifttt.realtime"
    assert rows[0].payload["device"]["id"] == rows[0].destination
    assert {r.ordering_key for r in rows} == {f"ifttt:{user}"}
    assert await change(store, tenant, "dev_sw", "power", "ON", NOW + 1.5) == 1
    [late] = [r for r in await realtime_rows(store, NOW + 2.0) if r.id not in {r.id for r in rows}]
    assert late.payload["trigger_identities"] == ["ti-1", "ti-2"]


async def test_realtime_rows_are_per_user(store: Store, home: tuple[str, str]) -> None:
    """Two users watching one device get a row each, under their own ordering keys."""
    tenant, user = home
    other = await store.create_user(
        User(id="usr_a2", tenant_id=tenant, email="a2@example.com", is_admin=False, created_at=NOW)
    )
    await store.save_ifttt_identity(identity(tenant, user, "ti-1", "dev_sw"))
    await store.save_ifttt_identity(identity(tenant, other.id, "ti-2", "dev_sw"))
    assert await change(store, tenant, "dev_sw", "power", "ON", NOW + 0.25) == 2
    rows = await realtime_rows(store)
    assert sorted((r.ordering_key, tuple(r.payload["trigger_identities"])) for r in rows) == sorted(
        [(f"ifttt:{user}", ("ti-1",)), (f"ifttt:{other.id}", ("ti-2",))]
    )
    assert await store.forget_ifttt_user(tenant, other.id, NOW + 1) == 1
    [left] = await realtime_rows(store)
    assert left.ordering_key == f"ifttt:{user}"
    assert [
        i.identity for i in await store.list_ifttt_identities(tenant) if i.deleted_at is None
    ] == ["ti-1"]
    assert await change(store, tenant, "dev_sw", "power", "OFF", NOW + 5) == 1


async def test_threshold_identities_are_queued_only_on_crossings(
    store: Store, home: tuple[str, str]
) -> None:
    """Only a reading that crosses the identity's threshold queues it."""
    tenant, user = home
    await store.track_ifttt_threshold(tenant, "dev_th", ABOVE_20, NOW, limit=9)
    await store.save_ifttt_identity(identity(tenant, user, "ti-hot", "dev_th", "sensor", ABOVE_20))
    assert await change(store, tenant, "dev_th", "temperature", temp(19.0), NOW + 1) == 0
    assert await change(store, tenant, "dev_th", "temperature", temp(21.0), NOW + 2) == 1
    assert await change(store, tenant, "dev_th", "temperature", temp(23.0), NOW + 4) == 0


async def test_realtime_rows_hold_at_most_1000_identities(
    store: Store, home: tuple[str, str]
) -> None:
    """1,500 identities watching one device make two rows: 1,000 and 500."""
    tenant, user = home
    for n in range(1500):
        await store.save_ifttt_identity(identity(tenant, user, f"ti-{n:04d}", "dev_sw"))
    assert await change(store, tenant, "dev_sw", "power", "ON", NOW + 0.5) == 2
    rows = await realtime_rows(store)
    assert sorted(len(r.payload["trigger_identities"]) for r in rows) == [500, REALTIME_BATCH]
    named = [i for r in rows for i in r.payload["trigger_identities"]]
    assert sorted(named) == [f"ti-{n:04d}" for n in range(1500)]


async def test_realtime_switched_off_queues_nothing(store: Store, home: tuple[str, str]) -> None:
    """With Realtime disabled (no service key) the timeline is written, no row is queued;
    a debounce of 0 makes rows due at once."""
    tenant, user = home
    await store.save_ifttt_identity(identity(tenant, user, "ti", "dev_sw"))
    await store.configure_ifttt_realtime(enabled=False, debounce_seconds=1.0, now=NOW)
    assert await change(store, tenant, "dev_sw", "power", "ON", NOW + 0.5) == 0
    assert len(await store.list_ifttt_events(tenant, "dev_sw", "power", "", limit=5)) == 1
    await store.configure_ifttt_realtime(enabled=True, debounce_seconds=0.0, now=NOW)
    assert await change(store, tenant, "dev_sw", "power", "OFF", NOW + 0.7) == 1
    assert len(await realtime_rows(store, NOW + 0.7)) == 1


async def test_action_requests_are_remembered_per_user(store: Store, home: tuple[str, str]) -> None:
    """The first result of a request id stays; ids are per user and action."""
    tenant, user = home
    assert await store.find_ifttt_action(tenant, user, "set_power", "r1") is None
    await store.record_ifttt_action(tenant, user, "set_power", "r1", "dev_sw:2", NOW)
    await store.record_ifttt_action(tenant, user, "set_power", "r1", "dev_sw:3", NOW)
    assert await store.find_ifttt_action(tenant, user, "set_power", "r1") == "dev_sw:2"
    assert await store.find_ifttt_action(tenant, user, "press_button", "r1") is None
    other, other_user = await tenant_with_user(store, "b")
    assert await store.find_ifttt_action(other.id, other_user.id, "set_power", "r1") is None


async def test_prune_removes_only_what_is_old(store: Store, home: tuple[str, str]) -> None:
    """Events before the cut-off go; identities and thresholds not polled since go;
    request ids older than theirs go; everything newer stays."""
    tenant, user = home
    await change(store, tenant, "dev_sw", "power", "ON", NOW)
    await change(store, tenant, "dev_sw", "power", "OFF", NOW + 100)
    await store.save_ifttt_identity(identity(tenant, user, "old", "dev_sw", at=NOW))
    await store.save_ifttt_identity(identity(tenant, user, "new", "dev_sw", at=NOW + 100))
    await store.track_ifttt_threshold(tenant, "dev_th", ABOVE_20, NOW, limit=9)
    await store.record_ifttt_action(tenant, user, "set_power", "r-old", "x", NOW)
    await store.record_ifttt_action(tenant, user, "set_power", "r-new", "y", NOW + 100)
    pruned = await store.prune_ifttt(
        events_before=NOW + 50,
        keep_events=0,
        identities_before=NOW + 50,
        requests_before=NOW + 50,
    )
    assert (pruned.events, pruned.identities, pruned.thresholds, pruned.requests) == (1, 1, 1, 1)
    assert pruned.total == 4
    [kept] = await store.list_ifttt_events(tenant, "dev_sw", "power", "", limit=5)
    assert kept.new_value == "OFF"
    assert [i.identity for i in await store.list_ifttt_identities(tenant)] == ["new"]
    assert await store.find_ifttt_action(tenant, user, "set_power", "r-new") == "y"
    assert await store.find_ifttt_action(tenant, user, "set_power", "r-old") is None


async def test_a_users_realtime_rows_go_together_or_in_order(
    store: Store, home: tuple[str, str]
) -> None:
    """Rows of one user due together are claimed together (one request carries them); a row
    waiting for its retry holds back the user's later rows until it is due again."""
    tenant, user = home
    await store.save_ifttt_identity(identity(tenant, user, "ti-sw", "dev_sw"))
    await store.save_ifttt_identity(identity(tenant, user, "ti-dim", "dev_dim"))
    await change(store, tenant, "dev_sw", "power", "ON", NOW + 0.25)
    await change(store, tenant, "dev_dim", "power", "ON", NOW + 0.3)
    first, second = (await store.claim_outbox("w", NOW + 1.0, 30, 10)).items
    assert (first.ordering_key, second.ordering_key) == (f"ifttt:{user}", f"ifttt:{user}")
    retry = DeliveryOutcome(
        first,
        delivered=False,
        dead=False,
        next_attempt_at=NOW + 100,
        status_code=503,
        error="IFTTT answered 503",
        duration_ms=1.0,
        activity=None,
    )
    done = dataclasses.replace(retry, item=second, delivered=True, next_attempt_at=None)
    assert await record_on_disk(store, [retry, done], NOW + 1.1, owner="w") == {
        first.id,
        second.id,
    }
    await change(store, tenant, "dev_dim", "power", "OFF", NOW + 2.5)
    assert (await store.claim_outbox("w", NOW + 50, 30, 10)).items == []
    assert await store.next_outbox_due() == pytest.approx(NOW + 100)
    again = (await store.claim_outbox("w", NOW + 101, 30, 10)).items
    assert again[0].id == first.id
    assert [item.payload["trigger_identities"] for item in again] == [["ti-sw"], ["ti-dim"]]


async def test_prune_keeps_the_newest_events_of_every_timeline(
    store: Store, home: tuple[str, str]
) -> None:
    """Past retention, a timeline keeps its newest ``keep_events`` events whatever their
    age; older ones go, and a busy timeline does not protect a quiet one's old events."""
    tenant, _ = home
    for n in range(8):
        await change(store, tenant, "dev_sw", "power", "ON" if n % 2 else "OFF", NOW + n)
    await change(store, tenant, "dev_dim", "brightness", 30, NOW)
    await change(store, tenant, "dev_dim", "brightness", 40, NOW + 1)
    pruned = await store.prune_ifttt(
        events_before=NOW + 10**6, keep_events=3, identities_before=NOW, requests_before=NOW
    )
    assert pruned.events == 5
    kept = await store.list_ifttt_events(tenant, "dev_sw", "power", "", limit=50)
    assert [e.occurred_at for e in kept] == [NOW + 7, NOW + 6, NOW + 5]
    assert len(await store.list_ifttt_events(tenant, "dev_dim", "brightness", "", limit=50)) == 2
    # Young events are never pruned, however many there are.
    pruned = await store.prune_ifttt(
        events_before=NOW, keep_events=1, identities_before=NOW, requests_before=NOW
    )
    assert pruned.events == 0


async def test_threshold_count_per_sensor_is_capped(store: Store, home: tuple[str, str]) -> None:
    """A new threshold past the limit is refused (None) and not tracked; known ones go on."""
    tenant, _ = home
    assert await store.track_ifttt_threshold(tenant, "dev_th", ABOVE_20, NOW, limit=2) == 0
    assert await store.track_ifttt_threshold(tenant, "dev_th", BELOW_20, NOW, limit=2) == 0
    refused = Threshold("above", 30.0)
    assert await store.track_ifttt_threshold(tenant, "dev_th", refused, NOW, limit=2) is None
    assert await store.track_ifttt_threshold(tenant, "dev_th", ABOVE_20, NOW + 1, limit=2) == 0
    await change(store, tenant, "dev_th", "temperature", temp(31.0), NOW + 2)
    assert await store.list_ifttt_events(tenant, "dev_th", "sensor", refused.variant, limit=5) == []


async def test_webhook_format_fields_round_trip(store: Store) -> None:
    """The format, IFTTT event and encrypted key are stored, updated and read back;
    webhooks made without them are ``standard``."""
    tenant, _ = await tenant_with_user(store, "a")
    plain = await store.create_webhook(hook(tenant.id, "whk_plain"))
    assert (plain.format, plain.ifttt_event, plain.ifttt_key_ciphertext) == ("standard", None, None)
    maker = await store.create_webhook(
        hook(
            tenant.id,
            "whk_maker",
            url="https://maker.ifttt.com",
            format="ifttt_webhooks",
            ifttt_event="lamp",
            ifttt_key_ciphertext="v1.key",
        )
    )
    assert maker.seq > plain.seq
    fetched = await store.get_webhook(tenant.id, "whk_maker")
    assert fetched == maker
    updated = await store.update_webhook(
        tenant.id, "whk_maker", lambda w: dataclasses.replace(w, ifttt_event="hall")
    )
    assert updated.ifttt_event == "hall"
    assert (await store.get_webhook(tenant.id, "whk_maker")) == updated
    listed = await store.list_webhooks(tenant.id, after_seq=None, limit=10)
    assert [w.format for w in listed] == ["standard", "ifttt_webhooks"]
