"""The store contract: what every backend must do, tested through the ``Store`` interface only."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from staterelay.core.errors import Conflict, InvalidInput, NotFound
from staterelay.core.records import (
    ApiKey,
    DeliveryOutcome,
    Device,
    DeviceChange,
    NewActivity,
    NewOutboxEvent,
    OutboxItem,
    PropertyState,
    Tenant,
    User,
    Webhook,
)
from staterelay.store import Store
from tests.store.outbox_rows import record_on_disk
from tests.store.planning import PLAN, removal

NOW = 1_800_000_000.0


async def tenant_with_user(store: Store, name: str) -> tuple[Tenant, User]:
    """A tenant and one user in it."""
    tenant = await store.create_tenant(Tenant(id=f"ten_{name}", name=name, created_at=NOW))
    user = await store.create_user(
        User(
            id=f"usr_{name}",
            tenant_id=tenant.id,
            email=f"{name}@example.com",
            is_admin=False,
            created_at=NOW,
        )
    )
    return tenant, user


def switch(tenant_id: str, device_id: str, name: str) -> Device:
    """A switch record, off."""
    return Device(
        seq=0,
        id=device_id,
        tenant_id=tenant_id,
        type="switch",
        name=name,
        description="",
        options={},
        properties={"power": PropertyState("OFF", NOW)},
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def created(device: Device) -> NewActivity:
    """The activity row of a creation."""
    return NewActivity(
        kind="device.created",
        source="api",
        actor="test",
        device_id=device.id,
        device_name=device.name,
    )


def hook(tenant_id: str, hook_id: str, **kwargs: object) -> Webhook:
    """A webhook record."""
    fields: dict[str, object] = {
        "seq": 0,
        "id": hook_id,
        "tenant_id": tenant_id,
        "url": "https://example.com/hook",
        "description": "",
        "device_ids": None,
        "event_types": None,
        "enabled": True,
        "secret_ciphertext": "v1.x",
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(kwargs)
    return Webhook(**fields)  # type: ignore[arg-type]


def power(value: str) -> DeviceChange:
    """A change of the power property with its activity row and event."""
    return DeviceChange(
        properties={"power": value},
        activity=(
            NewActivity(
                kind="state",
                source="api",
                actor="t",
                property="power",
                new_value=value,
                device_id="dev_a",
            ),
        ),
        events=(
            NewOutboxEvent(event_type="state.changed", device_id="dev_a", payload={"new": value}),
        ),
    )


async def test_ready_after_open(store: Store) -> None:
    """An opened store is migrated and ready."""
    assert await store.ready()


async def test_user_email_unique_case_insensitively(store: Store) -> None:
    """A second user with the same email in any case is a conflict."""
    tenant, _ = await tenant_with_user(store, "a")
    with pytest.raises(Conflict):
        await store.create_user(
            User(
                id="usr_x",
                tenant_id=tenant.id,
                email="A@EXAMPLE.COM",
                is_admin=False,
                created_at=NOW,
            )
        )
    found = await store.find_user_by_email("A@Example.com")
    assert found is not None
    assert found.id == "usr_a"


async def test_device_create_get_list_and_tenant_isolation(store: Store) -> None:
    """Devices are visible only inside their tenant."""
    a, _ = await tenant_with_user(store, "a")
    b, _ = await tenant_with_user(store, "b")
    stored, entry, rows = await store.create_device(
        switch(a.id, "dev_a", "Lamp"), created(switch(a.id, "dev_a", "Lamp")), (), plan=PLAN
    )
    assert stored.seq > 0
    assert entry.kind == "device.created"
    assert rows == 0
    assert (await store.get_device(a.id, "dev_a")) is not None
    assert await store.get_device(b.id, "dev_a") is None
    assert [d.id for d in await store.list_devices(a.id, after_seq=None, limit=10)] == ["dev_a"]
    assert await store.list_devices(b.id, after_seq=None, limit=10) == []
    with pytest.raises(NotFound):
        await store.change_device(b.id, "dev_a", lambda d: power("ON"), NOW, plan=PLAN)
    with pytest.raises(NotFound):
        await store.delete_device(
            b.id, "dev_a", removal(created(stored), ()), time.time(), plan=PLAN
        )
    assert (await store.get_device(a.id, "dev_a")).properties["power"].value == "OFF"  # type: ignore[union-attr]


async def test_device_names_unique_per_tenant_case_insensitively(store: Store) -> None:
    """Two devices of one tenant cannot share a name; two tenants can."""
    a, _ = await tenant_with_user(store, "a")
    b, _ = await tenant_with_user(store, "b")
    first = switch(a.id, "dev_1", "Lamp")
    await store.create_device(first, created(first), (), plan=PLAN)
    second = switch(a.id, "dev_2", "LAMP")
    with pytest.raises(Conflict):
        await store.create_device(second, created(second), (), plan=PLAN)
    other = switch(b.id, "dev_3", "Lamp")
    await store.create_device(other, created(other), (), plan=PLAN)


async def test_change_bumps_version_writes_activity_and_outbox(store: Store) -> None:
    """A change is one transaction: property, version, activity row, outbox rows."""
    a, _ = await tenant_with_user(store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)
    await store.create_webhook(hook(a.id, "whk_all"))
    await store.create_webhook(hook(a.id, "whk_other", device_ids=("dev_zzz",)))
    await store.create_webhook(hook(a.id, "whk_off", enabled=False))
    committed = await store.change_device(a.id, "dev_a", lambda d: power("ON"), NOW + 5, plan=PLAN)
    assert committed.before.version == 1
    assert committed.after.version == 2
    assert committed.after.properties["power"] == PropertyState("ON", NOW + 5)
    assert committed.outbox_rows == 1
    assert [e.new_value for e in committed.activity] == ["ON"]
    reread = await store.get_device(a.id, "dev_a")
    assert reread == committed.after
    claimed = (await store.claim_outbox("w1", NOW + 10, 60, 10)).items
    assert [(i.destination, i.payload["new"]) for i in claimed] == [("whk_all", "ON")]


async def test_failing_mutator_changes_nothing(store: Store) -> None:
    """A domain error raised by the mutator rolls its change back and reaches the caller."""
    a, _ = await tenant_with_user(store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)

    def bad(_: Device) -> DeviceChange:
        raise InvalidInput("nope")

    with pytest.raises(InvalidInput):
        await store.change_device(a.id, "dev_a", bad, NOW, plan=PLAN)
    again = await store.get_device(a.id, "dev_a")
    assert again is not None
    assert again.version == 1
    assert len(await store.list_activity(a.id, limit=10)) == 1


async def test_concurrent_changes_are_serialized(store: Store) -> None:
    """Many concurrent writes (group-committed) each see the previous version."""
    a, _ = await tenant_with_user(store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)

    def toggle(current: Device) -> DeviceChange:
        return power("OFF" if current.properties["power"].value == "ON" else "ON")

    results = await asyncio.gather(
        *(store.change_device(a.id, "dev_a", toggle, NOW, plan=PLAN) for _ in range(50))
    )
    assert sorted(r.after.version for r in results) == list(range(2, 52))
    final = await store.get_device(a.id, "dev_a")
    assert final is not None
    assert final.version == 51
    assert final.properties["power"].value == "OFF"  # 50 toggles from OFF


async def test_activity_pagination_and_filters(store: Store) -> None:
    """Activity lists newest first, pages by id, filters by device and source."""
    a, _ = await tenant_with_user(store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)
    for i in range(5):
        await store.change_device(
            a.id, "dev_a", lambda d, i=i: power("ON" if i % 2 == 0 else "OFF"), NOW + i, plan=PLAN
        )
    everything = await store.list_activity(a.id, limit=100)
    assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
    page = await store.list_activity(a.id, limit=2)
    rest = await store.list_activity(a.id, before_id=page[-1].id, limit=100)
    assert [e.id for e in [*page, *rest]] == [e.id for e in everything]
    assert len(await store.list_activity(a.id, device_id="dev_a", limit=100)) == 6
    assert len(await store.list_activity(a.id, source="alexa", limit=100)) == 0


def device_test_events(count: int) -> list[NewOutboxEvent]:
    """Test sends about ``count`` different devices: rows of ``count`` ordering keys."""
    return [
        NewOutboxEvent(event_type="webhook.test", device_id=f"dev_{i}", payload={})
        for i in range(count)
    ]


async def test_outbox_claim_is_exclusive_and_leases_expire(store: Store) -> None:
    """A claimed row is not handed out again until its lease ends or is released."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(a.id, "whk"))
    assert await store.enqueue_events(a.id, device_test_events(2), time.time(), plan=PLAN) == 2
    now = time.time()
    first = (await store.claim_outbox("w1", now, 30, 10)).items
    assert len(first) == 2
    assert (await store.claim_outbox("w2", now, 30, 10)).items == []
    assert len((await store.claim_outbox("w2", now + 31, 30, 10)).items) == 2
    assert await store.release_leases("w2") == 2
    assert len((await store.claim_outbox("w3", now, 30, 1)).items) == 1


def outcome_of(
    item: OutboxItem,
    *,
    delivered: bool = True,
    retry_at: float | None = None,
    merged_into: str | None = None,
) -> DeliveryOutcome:
    """A delivered (or merged) row, or a retry due at ``retry_at``."""
    return DeliveryOutcome(
        item,
        delivered=delivered and retry_at is None,
        dead=False,
        next_attempt_at=retry_at,
        status_code=None if merged_into else 204 if retry_at is None else 503,
        error=None if retry_at is None else "HTTP 503",
        duration_ms=1.0,
        activity=None,
        merged_into=merged_into,
    )


async def test_rows_of_one_key_go_one_at_a_time_in_order(store: Store) -> None:
    """Only the oldest pending row of an ordering key is claimable; a retry holds the rows
    behind it (new ones too) until it is due, and no other key; a merged row ends merged."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(a.id, "whk"))
    one = NewOutboxEvent(event_type="webhook.test", device_id="dev_1", payload={})
    other = NewOutboxEvent(event_type="webhook.test", device_id="dev_2", payload={})
    assert await store.enqueue_events(a.id, [one, one, one, other], time.time(), plan=PLAN) == 4
    now = time.time()
    first, second_key = (await store.claim_outbox("w", now, 30, 10)).items
    assert (first.ordering_key, second_key.ordering_key) == (
        "webhook:whk:dev_1",
        "webhook:whk:dev_2",
    )
    assert (await store.claim_outbox("w", now, 30, 10)).items == []  # the rest wait behind `first`
    assert await store.next_outbox_due() == pytest.approx(now + 30)  # leases, not the waiting
    await record_on_disk(
        store, [outcome_of(first, retry_at=now + 100), outcome_of(second_key)], now, owner="w"
    )
    await store.enqueue_events(a.id, [one, other], time.time(), plan=PLAN)
    # dev_1's rows (the one just written too) wait for its head's retry; dev_2 goes on.
    [next_other] = (await store.claim_outbox("w", now + 1, 30, 10)).items
    assert next_other.ordering_key == "webhook:whk:dev_2"
    await record_on_disk(store, [outcome_of(next_other)], now + 1, owner="w")
    assert (await store.claim_outbox("w", now + 50, 30, 10)).items == []
    assert await store.next_outbox_due() == pytest.approx(now + 100)
    taken: list[int] = []
    for step in range(4):
        [item] = (await store.claim_outbox("w", now + 101 + step, 30, 10)).items
        assert item.ordering_key == "webhook:whk:dev_1"
        taken.append(item.id)
        merged = item.event_id if step == 2 else None
        result = outcome_of(item, merged_into=first.event_id if merged else None)
        assert await record_on_disk(store, [result], now + 101, owner="w") == {item.id}
    assert taken == sorted(taken)
    assert taken[0] == first.id
    assert (await store.claim_outbox("w", now + 200, 30, 10)).items == []
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (0, 0)
    history = await store.list_webhook_deliveries(a.id, "whk", before_id=None, limit=20)
    assert len(history) == 6  # the merged row was not sent, so it has no delivery attempt


async def test_record_deliveries_retry_dead_and_history(store: Store) -> None:
    """Outcomes update rows, add delivery history and activity rows."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(a.id, "whk"))
    await store.enqueue_events(a.id, device_test_events(2), time.time(), plan=PLAN)
    now = time.time()
    one, two = (await store.claim_outbox("w", now, 30, 10)).items
    activity = NewActivity(kind="delivery", source="system", actor=None, detail={"x": 1})
    await record_on_disk(
        store,
        [
            DeliveryOutcome(
                one,
                delivered=True,
                dead=False,
                next_attempt_at=None,
                status_code=200,
                error=None,
                duration_ms=3.0,
                activity=activity,
            ),
            DeliveryOutcome(
                two,
                delivered=False,
                dead=False,
                next_attempt_at=now + 100,
                status_code=500,
                error="HTTP 500",
                duration_ms=4.0,
                activity=None,
            ),
        ],
        now,
        owner="w",
    )
    stats = await store.outbox_stats()
    assert stats.pending == 1
    assert (await store.claim_outbox("w", now + 50, 30, 10)).items == []
    assert await store.next_outbox_due() == pytest.approx(now + 100)
    retry = (await store.claim_outbox("w", now + 101, 30, 10)).items
    assert [r.attempts for r in retry] == [1]
    await record_on_disk(
        store,
        [
            DeliveryOutcome(
                retry[0],
                delivered=False,
                dead=True,
                next_attempt_at=None,
                status_code=None,
                error="gave up",
                duration_ms=1.0,
                activity=None,
            )
        ],
        now,
        owner="w",
    )
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (0, 1)
    history = await store.list_webhook_deliveries(a.id, "whk", before_id=None, limit=10)
    assert sorted(h.status_code or 0 for h in history) == [0, 200, 500]
    assert [e.kind for e in await store.list_activity(a.id, limit=10)] == ["delivery"]


def attempt(item: OutboxItem, *, delivered: bool, status_code: int | None) -> DeliveryOutcome:
    """One attempt's outcome: delivered, or a retry due in 100 s; with an activity row."""
    return DeliveryOutcome(
        item,
        delivered=delivered,
        dead=False,
        next_attempt_at=None if delivered else item.created_at + 100,
        status_code=status_code,
        error=None if delivered else f"HTTP {status_code}",
        duration_ms=1.0,
        activity=NewActivity(kind="delivery", source="system", actor=None, detail={}),
    )


async def test_renew_outbox_leases_extends_only_the_owners_pending_rows(store: Store) -> None:
    """Renewal extends the owner's pending rows; others' leases and finished rows stay as they
    are, and the ids it returns are the rows the owner still holds."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(a.id, "whk"))
    assert await store.enqueue_events(a.id, device_test_events(4), time.time(), plan=PLAN) == 4
    now = time.time()
    one, two = (await store.claim_outbox("w1", now, 30, 2)).items
    [three] = (await store.claim_outbox("w2", now, 30, 1)).items
    [four] = (await store.claim_outbox("w4", now, 30, 1)).items
    assert await store.release_leases("w4") == 1  # four is pending and leased to no one
    assert await record_on_disk(
        store, [attempt(two, delivered=True, status_code=200)], now, owner="w1"
    ) == {two.id}
    ids = [one.id, two.id, three.id, four.id]
    assert await store.renew_outbox_leases("w1", ids, now + 300) == {one.id}
    assert await store.renew_outbox_leases("w1", [], now + 300) == set()
    # At now + 31 the original leases are over: w1's renewed row is still held; w2's row (not
    # renewed by w1) and the free row are claimable; the delivered row stays delivered.
    taken = (await store.claim_outbox("w3", now + 31, 30, 10)).items
    assert sorted(item.id for item in taken) == sorted([three.id, four.id])
    assert await store.renew_outbox_leases("w2", [three.id], now + 300) == set()
    assert await store.renew_outbox_leases("w1", [one.id], now + 600) == {one.id}
    assert await store.release_leases("w3") == 2
    assert {item.id for item in (await store.claim_outbox("w3", now + 301, 30, 10)).items} == {
        three.id,
        four.id,
    }
    assert await store.release_leases("w3") == 2
    assert [item.id for item in (await store.claim_outbox("w3", now + 601, 30, 1)).items] == [
        one.id
    ]
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (3, 0)


async def test_record_deliveries_writes_only_rows_the_owner_still_holds(store: Store) -> None:
    """A late result from an owner whose lease ran out and was taken does not overwrite the
    new owner's row, adds no history or activity, and does not free the new owner's lease."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(hook(a.id, "whk"))
    event = NewOutboxEvent(event_type="webhook.test", device_id=None, payload={})
    await store.enqueue_events(a.id, [event], time.time(), plan=PLAN)
    now = time.time()
    [mine] = (await store.claim_outbox("w1", now, 30, 10)).items
    [theirs] = (await store.claim_outbox("w2", now + 31, 30, 10)).items  # w1's lease ran out
    assert theirs.id == mine.id
    late = attempt(mine, delivered=True, status_code=200)
    assert await record_on_disk(store, [late], now + 32, owner="w1") == set()
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (1, 0)
    assert await store.list_webhook_deliveries(a.id, "whk", before_id=None, limit=10) == []
    assert [e.kind for e in await store.list_activity(a.id, limit=10)] == []
    assert (await store.claim_outbox("w3", now + 33, 30, 10)).items == []  # still w2's
    retry = attempt(theirs, delivered=False, status_code=500)
    assert await record_on_disk(store, [retry], now + 34, owner="w2") == {theirs.id}
    history = await store.list_webhook_deliveries(a.id, "whk", before_id=None, limit=10)
    assert [h.status_code for h in history] == [500]
    assert [e.kind for e in await store.list_activity(a.id, limit=10)] == ["delivery"]
    # Once recorded the row is no one's: a replayed result of either owner changes nothing.
    assert await record_on_disk(store, [late], now + 35, owner="w1") == set()
    assert await record_on_disk(store, [retry], now + 35, owner="w2") == set()
    [again] = (await store.claim_outbox("w3", now + 200, 30, 10)).items
    assert again.attempts == 1
    # A row deleted while it was sent (its webhook was switched off) is no one's either, but
    # the attempt still goes into the history and the activity.
    await store.update_webhook(a.id, "whk", lambda w: dataclasses.replace(w, enabled=False))
    assert (await store.outbox_stats()).pending == 0
    gone = attempt(again, delivered=False, status_code=410)
    assert await record_on_disk(store, [gone], now + 201, owner="w3") == {again.id}
    history = await store.list_webhook_deliveries(a.id, "whk", before_id=None, limit=10)
    assert [h.status_code for h in history] == [410, 500]
    assert [e.kind for e in await store.list_activity(a.id, limit=10)] == ["delivery"] * 2


async def test_webhook_delete_drops_pending_rows_and_isolation(store: Store) -> None:
    """Deleting a webhook removes its undelivered rows; other tenants cannot touch it."""
    a, _ = await tenant_with_user(store, "a")
    b, _ = await tenant_with_user(store, "b")
    await store.create_webhook(hook(a.id, "whk"))
    await store.enqueue_events(
        a.id,
        [NewOutboxEvent(event_type="webhook.test", device_id=None, payload={})],
        time.time(),
        plan=PLAN,
    )
    assert await store.get_webhook(b.id, "whk") is None
    assert not await store.delete_webhook(b.id, "whk")
    with pytest.raises(NotFound):
        await store.update_webhook(b.id, "whk", lambda w: w)
    assert (await store.outbox_stats()).pending == 1
    assert await store.delete_webhook(a.id, "whk")
    assert (await store.outbox_stats()).pending == 0


async def test_api_keys_by_digest_revoke_and_touch(store: Store) -> None:
    """Keys are found by digest, revoked per user, and last-used is recorded."""
    a, user = await tenant_with_user(store, "a")
    b, other = await tenant_with_user(store, "b")
    key = ApiKey(
        id="key_1",
        tenant_id=a.id,
        user_id=user.id,
        name="k",
        prefix="sr_abcd",
        scopes=("read", "write"),
        created_at=NOW,
        last_used_at=None,
        revoked_at=None,
    )
    await store.create_api_key(key, "digest-1")
    assert (await store.find_api_key("digest-1")) == key
    assert await store.find_api_key("digest-2") is None
    assert not await store.revoke_api_key(b.id, other.id, "key_1", NOW)
    await store.touch_api_keys({"key_1": NOW + 1})
    assert (await store.list_api_keys(a.id, user.id))[0].last_used_at == NOW + 1
    assert await store.revoke_api_key(a.id, user.id, "key_1", NOW + 2)
    found = await store.find_api_key("digest-1")
    assert found is not None
    assert found.revoked_at == NOW + 2


async def test_prune_removes_only_old_rows(store: Store) -> None:
    """Retention deletes activity older than the cut-off and keeps the rest."""
    a, _ = await tenant_with_user(store, "a")
    old = switch(a.id, "dev_old", "Old")
    await store.create_device(old, created(old), (), plan=PLAN)
    new = dataclasses.replace(old, id="dev_new", name="New", created_at=NOW + 1000)
    await store.create_device(new, created(new), (), plan=PLAN)
    assert await store.prune_activity(NOW + 500) == 1
    assert [e.device_id for e in await store.list_activity(a.id, limit=10)] == ["dev_new"]


async def test_delete_device_logs_and_removes_properties(store: Store) -> None:
    """A deleted device is gone with its properties; its history stays in the tenant log."""
    a, _ = await tenant_with_user(store, "a")
    device = switch(a.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)
    gone, entry, _ = await store.delete_device(
        a.id,
        "dev_a",
        removal(
            NewActivity(
                kind="device.deleted",
                source="api",
                actor="t",
                device_id="dev_a",
                device_name="Lamp",
            ),
            (),
        ),
        time.time(),
        plan=PLAN,
    )
    assert gone.id == "dev_a"
    assert entry.kind == "device.deleted"
    assert await store.get_device(a.id, "dev_a") is None
    assert await store.count_devices(a.id) == 0
    again = switch(a.id, "dev_b", "Lamp")
    await store.create_device(again, created(again), (), plan=PLAN)  # the name is free again


async def test_test_send_reaches_a_filtered_webhook(store: Store) -> None:
    """A test event goes to the named webhook even when its filters would not match it."""
    a, _ = await tenant_with_user(store, "a")
    await store.create_webhook(
        hook(a.id, "whk_f", event_types=("state.changed",), device_ids=("dev_x",))
    )
    await store.create_webhook(hook(a.id, "whk_other"))
    rows = await store.enqueue_events(
        a.id,
        [
            NewOutboxEvent(
                event_type="webhook.test", device_id=None, payload={}, only_destination="whk_f"
            )
        ],
        time.time(),
        plan=PLAN,
    )
    assert rows == 1
    claimed = (await store.claim_outbox("w", time.time() + 1, 30, 10)).items
    assert [(item.destination, item.event_type) for item in claimed] == [("whk_f", "webhook.test")]
