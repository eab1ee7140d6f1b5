"""The integration records port on both stores: records per household, integration, kind and
key; links in the interest facts (their version moving with links, not with data); ending a
link drops its sink's pending rows only; other households never see or touch them."""

from __future__ import annotations

from staterelay.core.delivery import BUILT_IN_POLICIES, DeliveryPlanner
from staterelay.integrations.google.policy import GooglePolicy
from staterelay.store import Store
from tests.store.outbox_rows import outbox_rows
from tests.store.test_alexa_contract import power
from tests.store.test_contract import NOW, created, switch, tenant_with_user

GOOGLE_PLAN = DeliveryPlanner((*BUILT_IN_POLICIES, GooglePolicy())).plan


async def test_records_round_trip(store: Store) -> None:
    """Put, get, list by kind, merge top-level keys, replace keeping created_at, delete."""
    tenant, user = await tenant_with_user(store, "a")
    first = await store.put_integration_record(
        tenant.id, "google", "link", user.id, {"linked_at": NOW, "grant": "g1"}, NOW
    )
    assert first.data == {"linked_at": NOW, "grant": "g1"}
    assert (first.created_at, first.updated_at) == (NOW, NOW)
    await store.put_integration_record(tenant.id, "google", "gone", "usr_x", {"why": "404"}, NOW)
    await store.put_integration_record(tenant.id, "other", "link", user.id, {}, NOW)
    assert await store.get_integration_record(tenant.id, "google", "link", user.id) == first
    listed = await store.list_integration_records(tenant.id, "google", "link")
    assert [record.key for record in listed] == [user.id]

    assert await store.merge_integration_record(
        tenant.id, "google", "link", user.id, {"last_sync_at": NOW + 1, "grant": "g2"}, NOW + 1
    )
    merged = await store.get_integration_record(tenant.id, "google", "link", user.id)
    assert merged is not None
    assert merged.data == {"linked_at": NOW, "grant": "g2", "last_sync_at": NOW + 1}
    assert merged.updated_at == NOW + 1
    assert not await store.merge_integration_record(
        tenant.id, "google", "link", "usr_nobody", {"x": 1}, NOW
    )

    replaced = await store.put_integration_record(
        tenant.id, "google", "link", user.id, {"fresh": True}, NOW + 2
    )
    assert replaced.data == {"fresh": True}
    assert (replaced.created_at, replaced.updated_at) == (NOW, NOW + 2)

    assert await store.delete_integration_record(tenant.id, "google", "link", user.id)
    assert not await store.delete_integration_record(tenant.id, "google", "link", user.id)
    assert await store.get_integration_record(tenant.id, "google", "link", user.id) is None
    assert await store.get_integration_record(tenant.id, "other", "link", user.id) is not None


async def test_records_stay_in_their_household(store: Store) -> None:
    """Another household can neither read, list, change nor delete them."""
    tenant_a, user_a = await tenant_with_user(store, "a")
    tenant_b, _ = await tenant_with_user(store, "b")
    await store.put_integration_record(tenant_a.id, "google", "link", user_a.id, {"n": 1}, NOW)
    assert await store.get_integration_record(tenant_b.id, "google", "link", user_a.id) is None
    assert await store.list_integration_records(tenant_b.id, "google", "link") == []
    assert not await store.merge_integration_record(
        tenant_b.id, "google", "link", user_a.id, {"n": 2}, NOW
    )
    assert not await store.delete_integration_record(tenant_b.id, "google", "link", user_a.id)
    kept = await store.get_integration_record(tenant_a.id, "google", "link", user_a.id)
    assert kept is not None
    assert kept.data == {"n": 1}
    assert (await store.interest_facts(tenant_b.id)).links == {}


async def test_links_are_interest_facts(store: Store) -> None:
    """Links (kind ``link``) are in the facts; their version moves when one is added or
    removed, not when a link's data or another kind of record changes."""
    tenant, user = await tenant_with_user(store, "a")
    before = await store.interest_facts(tenant.id)
    assert before.links == {}
    await store.put_integration_record(tenant.id, "google", "link", user.id, {}, NOW)
    await store.put_integration_record(tenant.id, "google", "link", "usr_b", {}, NOW)
    linked = await store.interest_facts(tenant.id)
    assert linked.links == {"google": (user.id, "usr_b")}
    assert linked.version > before.version
    await store.merge_integration_record(tenant.id, "google", "link", user.id, {"x": 1}, NOW)
    await store.put_integration_record(tenant.id, "google", "gone", "usr_c", {}, NOW)
    same = await store.interest_facts(tenant.id)
    assert same.version == linked.version
    await store.delete_integration_record(tenant.id, "google", "link", "usr_b")
    after = await store.interest_facts(tenant.id)
    assert after.links == {"google": (user.id,)}
    assert after.version > linked.version


async def test_ending_a_link_drops_its_pending_rows_only(store: Store) -> None:
    """A change plans a google row per linked user; ending one user's link drops that user's
    pending rows in the same transaction, and no one else's."""
    tenant, user = await tenant_with_user(store, "a")
    device = switch(tenant.id, "dev_a", "Lamp")
    await store.create_device(device, created(device), (), plan=GOOGLE_PLAN)
    for key in (user.id, "usr_b"):
        await store.put_integration_record(tenant.id, "google", "link", key, {}, NOW)
    await store.change_device(tenant.id, "dev_a", lambda d: power("ON"), NOW + 1, plan=GOOGLE_PLAN)
    rows = [row for row in await outbox_rows(store) if row.sink == "google"]
    assert sorted(row.destination for row in rows) == sorted([user.id, "usr_b"])
    assert all(row.ordering_key == f"google:{row.destination}:dev_a" for row in rows)
    assert await store.delete_integration_record(
        tenant.id, "google", "link", user.id, pending_sink="google"
    )
    left = [row for row in await outbox_rows(store) if row.sink == "google"]
    assert [row.destination for row in left] == ["usr_b"]
    # The next change is planned for the remaining link only.
    await store.change_device(tenant.id, "dev_a", lambda d: power("OFF"), NOW + 2, plan=GOOGLE_PLAN)
    later = [row for row in await outbox_rows(store) if row.sink == "google"]
    assert {row.destination for row in later} == {"usr_b"}
