"""The Alexa part of the store contract: grants, tokens, unlinking, report results, fan-out."""

from __future__ import annotations

import dataclasses
import time

from staterelay.core.records import DeviceChange, NewActivity, NewOutboxEvent
from staterelay.core.records.alexa import AlexaGrant, AlexaReportNote
from staterelay.store import Store
from tests.store.outbox_rows import outbox_rows
from tests.store.planning import PLAN, removal
from tests.store.test_contract import NOW, created, switch, tenant_with_user


def grant(tenant_id: str, user_id: str, grant_id: str, **fields: object) -> AlexaGrant:
    """An active grant record."""
    values: dict[str, object] = {
        "id": grant_id,
        "tenant_id": tenant_id,
        "user_id": user_id,
        "region": "NA",
        "status": "active",
        "access_token_ciphertext": "v1.access",
        "refresh_token_ciphertext": "v1.refresh",
        "token_expires_at": NOW + 3600,
        "linked_at": NOW,
        "refreshed_at": NOW,
    }
    values.update(fields)
    return AlexaGrant(**values)  # type: ignore[arg-type]


def power(value: str, device_id: str = "dev_a") -> DeviceChange:
    """A power change with its activity row and state.changed event."""
    return DeviceChange(
        properties={"power": value},
        activity=(
            NewActivity(kind="state", source="api", actor="t", property="power", new_value=value),
        ),
        events=(
            NewOutboxEvent(
                event_type="state.changed",
                device_id=device_id,
                payload={"property": "power", "new": value, "source": "api"},
            ),
        ),
    )


async def alexa_rows(store: Store) -> list[tuple[str, str, dict[str, object]]]:
    """(event type, destination, payload) of the pending ``alexa`` rows, oldest first."""
    return [
        (row.event_type, row.destination, row.payload)
        for row in await outbox_rows(store)
        if row.sink == "alexa"
    ]


async def test_grant_round_trip_and_one_per_user(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    first = await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    assert await store.get_alexa_grant(tenant.id, "alx_1") == first
    assert await store.find_user_alexa_grant(tenant.id, user.id) == first
    second = await store.save_alexa_grant(grant(tenant.id, user.id, "alx_2", region="EU"))
    assert await store.get_alexa_grant(tenant.id, "alx_1") is None
    assert await store.find_user_alexa_grant(tenant.id, user.id) == second


async def test_grants_stay_in_their_tenant(store: Store) -> None:
    tenant_a, user_a = await tenant_with_user(store, "a")
    tenant_b, user_b = await tenant_with_user(store, "b")
    await store.save_alexa_grant(grant(tenant_a.id, user_a.id, "alx_a"))
    assert await store.get_alexa_grant(tenant_b.id, "alx_a") is None
    assert await store.find_user_alexa_grant(tenant_b.id, user_a.id) is None
    assert not await store.unlink_alexa_grant(tenant_b.id, "alx_a", "no", NOW)
    assert not await store.update_alexa_tokens(
        tenant_b.id,
        "alx_a",
        access_token_ciphertext="x",
        refresh_token_ciphertext="y",
        expires_at=NOW,
        refreshed_at=NOW,
    )
    assert (await store.get_alexa_grant(tenant_a.id, "alx_a")) is not None
    assert user_b.tenant_id == tenant_b.id


async def test_token_updates_and_errors(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    await store.note_alexa_token_error(tenant.id, "alx_1", "Login with Amazon 401", NOW + 1)
    noted = await store.get_alexa_grant(tenant.id, "alx_1")
    assert noted is not None
    assert (noted.token_error, noted.token_error_at) == ("Login with Amazon 401", NOW + 1)
    assert await store.update_alexa_tokens(
        tenant.id,
        "alx_1",
        access_token_ciphertext="v1.access2",
        refresh_token_ciphertext="v1.refresh2",
        expires_at=NOW + 7200,
        refreshed_at=NOW + 2,
    )
    fresh = await store.get_alexa_grant(tenant.id, "alx_1")
    assert fresh == dataclasses.replace(
        noted,
        access_token_ciphertext="v1.access2",
        refresh_token_ciphertext="v1.refresh2",
        token_expires_at=NOW + 7200,
        refreshed_at=NOW + 2,
        token_error=None,
        token_error_at=None,
    )


async def test_fan_out_one_row_per_active_grant_with_version(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    other_tenant, other_user = await tenant_with_user(store, "b")
    second = await store.create_user(dataclasses.replace(user, id="usr_a2", email="a2@example.com"))
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    await store.save_alexa_grant(grant(tenant.id, second.id, "alx_2"))
    await store.save_alexa_grant(grant(other_tenant.id, other_user.id, "alx_b"))
    device = switch(tenant.id, "dev_a", "Lamp")
    event = NewOutboxEvent("device.created", "dev_a", {"device": {"id": "dev_a"}})
    _, _, rows = await store.create_device(device, created(device), (event,), plan=PLAN)
    assert rows == 2
    await store.change_device(tenant.id, "dev_a", lambda d: power("ON"), NOW + 5, plan=PLAN)
    found = await alexa_rows(store)
    assert sorted((t, d) for t, d, _ in found) == [
        ("device.created", "alx_1"),
        ("device.created", "alx_2"),
        ("state.changed", "alx_1"),
        ("state.changed", "alx_2"),
    ]
    changed = [p for t, _, p in found if t == "state.changed"]
    assert all(p["device_version"] == 2 and p["at"] == NOW + 5 for p in changed)
    assert all(p["new"] == "ON" for p in changed)
    assert [p["device_version"] for t, _, p in found if t == "device.created"] == [1, 1]


async def test_fan_out_skips_other_events_and_unlinked_grants(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    device = switch(tenant.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    await store.enqueue_events(
        tenant.id,
        (
            NewOutboxEvent("webhook.test", "dev_a", {}, only_destination="hook_1"),
            NewOutboxEvent("state.changed", "dev_a", {}, only_destination="hook_1"),
            NewOutboxEvent("device.updated", None, {}),
        ),
        time.time(),
        plan=PLAN,
    )
    assert await alexa_rows(store) == []
    await store.change_device(tenant.id, "dev_a", lambda d: power("ON"), NOW + 1, plan=PLAN)
    assert len(await alexa_rows(store)) == 1
    assert await store.unlink_alexa_grant(tenant.id, "alx_1", "SKILL_DISABLED_EXCEPTION", NOW + 2)
    # Unlinking drops what was waiting, and nothing new is queued.
    assert await alexa_rows(store) == []
    await store.change_device(tenant.id, "dev_a", lambda d: power("OFF"), NOW + 3, plan=PLAN)
    assert await alexa_rows(store) == []
    unlinked = await store.get_alexa_grant(tenant.id, "alx_1")
    assert unlinked is not None
    assert unlinked.status == "unlinked"
    assert unlinked.access_token_ciphertext is None
    assert unlinked.refresh_token_ciphertext is None
    assert (unlinked.unlinked_at, unlinked.unlinked_reason) == (
        NOW + 2,
        "SKILL_DISABLED_EXCEPTION",
    )
    assert not await store.unlink_alexa_grant(tenant.id, "alx_1", "again", NOW + 4)


async def test_delete_report_rows_and_relink_drops_old_rows(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    device = switch(tenant.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=PLAN)
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    await store.delete_device(
        tenant.id,
        "dev_a",
        removal(
            NewActivity(kind="device.deleted", source="api", actor="t"),
            (NewOutboxEvent("device.deleted", "dev_a", {"device": {"id": "dev_a"}}),),
        ),
        time.time(),
        plan=PLAN,
    )
    [(kind, destination, payload)] = await alexa_rows(store)
    assert (kind, destination, payload["device_version"]) == ("device.deleted", "alx_1", None)
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_2"))
    assert await alexa_rows(store) == []


async def test_report_results_keep_the_latest(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    await store.record_alexa_reports(
        [
            AlexaReportNote(tenant.id, "alx_1", NOW + 5, 202, None),
            AlexaReportNote(tenant.id, "alx_gone", NOW + 5, 202, None),
        ]
    )
    await store.record_alexa_reports([AlexaReportNote(tenant.id, "alx_1", NOW + 1, 503, "old")])
    stored = await store.get_alexa_grant(tenant.id, "alx_1")
    assert stored is not None
    assert (stored.last_report_at, stored.last_report_status, stored.last_report_error) == (
        NOW + 5,
        202,
        None,
    )
    await store.record_alexa_reports(
        [AlexaReportNote(tenant.id, "alx_1", NOW + 9, 403, "Alexa 403 SKILL_DISABLED_EXCEPTION")]
    )
    stored = await store.get_alexa_grant(tenant.id, "alx_1")
    assert stored is not None
    assert stored.last_report_error == "Alexa 403 SKILL_DISABLED_EXCEPTION"


async def test_untried_rows_absorb_later_changes_but_not_routine_triggers(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    lamp = switch(tenant.id, "dev_a", "Lamp")
    movie = dataclasses.replace(
        switch(tenant.id, "dev_m", "Movie"), options={"routine_trigger": True}
    )
    for device in (lamp, movie):
        await store.create_device(device, created(device), (), plan=PLAN)
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    for n, value in enumerate(("ON", "OFF", "ON")):
        await store.change_device(
            tenant.id, "dev_a", lambda d, v=value: power(v), NOW + n, plan=PLAN
        )
        await store.change_device(
            tenant.id, "dev_m", lambda d, v=value: power(v, "dev_m"), NOW + n, plan=PLAN
        )
    rows = [row for row in await outbox_rows(store) if row.sink == "alexa"]
    # The lamp's first row carries the later changes (it now stands for version 4); every
    # transition of the Routine trigger keeps its own row, in order, under one key.
    lamp_rows = [
        (r.payload["new"], r.payload["device_version"]) for r in rows if r.device_id == "dev_a"
    ]
    movie_rows = [
        (r.payload["new"], r.payload["device_version"]) for r in rows if r.device_id == "dev_m"
    ]
    assert lamp_rows == [("ON", 4)]
    assert movie_rows == [("ON", 2), ("OFF", 3), ("ON", 4)]
    assert {r.ordering_key for r in rows if r.device_id == "dev_m"} == {"alexa:alx_1:dev_m"}
    assert [r.mergeable for r in rows] == [True, False, False, False]
    items = (await store.claim_outbox("t", NOW + 10, 60, 100)).items
    lamp_items = [i for i in items if i.device_id == "dev_a"]
    assert len(lamp_items) == 1
    assert [i.payload["new"] for i in items if i.device_id == "dev_m"] == ["ON"]  # the head only
    # Once a row is picked up, the next change gets a row of its own.
    await store.change_device(tenant.id, "dev_a", lambda d: power("OFF"), NOW + 5, plan=PLAN)
    await store.release_leases("t")
    assert len([r for r in await alexa_rows(store) if r[2]["device_version"] == 5]) == 1


async def test_changes_never_merge_past_a_trigger_or_a_lifecycle_row(store: Store) -> None:
    """Only the newest row of a key takes a later change: a change after a lifecycle row
    (here an AddOrUpdateReport) gets a row of its own instead of joining an older one."""
    tenant, user = await tenant_with_user(store, "a")
    await store.save_alexa_grant(grant(tenant.id, user.id, "alx_1"))
    lamp = switch(tenant.id, "dev_a", "Lamp")
    await store.create_device(lamp, created(lamp), (), plan=PLAN)
    await store.change_device(tenant.id, "dev_a", lambda d: power("ON"), NOW + 1, plan=PLAN)

    def renamed(_device: object) -> DeviceChange:
        return DeviceChange(
            name="Hall lamp",
            activity=(NewActivity(kind="device.updated", source="api", actor="t"),),
            events=(NewOutboxEvent("device.updated", "dev_a", {"device": {"id": "dev_a"}}),),
        )

    await store.change_device(tenant.id, "dev_a", renamed, NOW + 2, plan=PLAN)
    await store.change_device(tenant.id, "dev_a", lambda d: power("OFF"), NOW + 3, plan=PLAN)
    rows = await alexa_rows(store)
    assert [(kind, payload["device_version"]) for kind, _, payload in rows] == [
        ("state.changed", 2),
        ("device.updated", 3),
        ("state.changed", 4),
    ]
