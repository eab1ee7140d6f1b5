"""The billing part of the store contract, on both stores: subscriptions, processed Stripe
events, usage, suspensions, the customer lookup, and tenant isolation of each."""

from __future__ import annotations

from staterelay.core.records import NewActivity
from staterelay.core.records.billing import Subscription, Usage
from staterelay.store import Store
from tests.store.planning import PLAN, removal
from tests.store.test_contract import NOW, created, switch, tenant_with_user


async def add_switch(store: Store, tenant_id: str, device_id: str, name: str) -> None:
    """Insert a switch."""
    device = switch(tenant_id, device_id, name)
    await store.create_device(device, created(device), (), plan=PLAN)


def paid(tenant_id: str, **fields: object) -> Subscription:
    """A Pro subscription row."""
    values: dict[str, object] = {
        "tenant_id": tenant_id,
        "plan_key": "pro",
        "status": "active",
        "customer_id": f"cus_{tenant_id}",
        "subscription_id": f"sub_{tenant_id}",
        "current_period_end": NOW + 30 * 86400,
        "cancel_at_period_end": False,
        "enforced_plan": "pro",
        "kept_devices": ("dev_b",),
        "updated_at": NOW,
    }
    values.update(fields)
    return Subscription(**values)  # type: ignore[arg-type]


CHANGED = NewActivity(
    kind="billing.changed", source="system", actor="stripe", detail={"plan": "pro"}
)


async def test_a_household_without_billing_has_no_row(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    state = await store.billing_state(tenant.id)
    assert state.subscription is None
    assert state.suspended == frozenset()
    assert await store.get_usage(tenant.id, "2027-01") == Usage(month="2027-01")


async def test_save_billing_round_trip_with_activity_and_suspensions(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    for device_id, name in (("dev_a", "A"), ("dev_b", "B"), ("dev_c", "C")):
        await add_switch(store, tenant.id, device_id, name)

    written = await store.save_billing(
        paid(tenant.id),
        activity=(CHANGED,),
        suspended=["dev_c", "dev_missing"],
        event_id="evt_1",
        now=NOW,
    )

    assert written
    state = await store.billing_state(tenant.id)
    assert state.subscription == paid(tenant.id)
    assert state.suspended == frozenset({"dev_c"}), "only devices that exist"
    activity = await store.list_activity(tenant.id, limit=10)
    assert activity[0].kind == "billing.changed"
    assert await store.stripe_event_seen(tenant.id, "evt_1")

    await store.save_billing(
        paid(tenant.id, status="past_due", past_due_since=NOW + 5),
        suspended=None,
        now=NOW + 5,
    )
    state = await store.billing_state(tenant.id)
    assert state.subscription is not None
    assert (state.subscription.status, state.subscription.past_due_since) == ("past_due", NOW + 5)
    assert state.suspended == frozenset({"dev_c"}), "None leaves the suspensions alone"


async def test_an_event_id_is_processed_once(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    assert await store.save_billing(paid(tenant.id), activity=(CHANGED,), event_id="evt_1", now=NOW)

    again = await store.save_billing(
        paid(tenant.id, status="canceled"), activity=(CHANGED,), event_id="evt_1", now=NOW + 1
    )

    assert not again
    state = await store.billing_state(tenant.id)
    assert state.subscription is not None
    assert state.subscription.status == "active", "nothing of the second one was written"
    activity = await store.list_activity(tenant.id, limit=10)
    assert [entry.kind for entry in activity].count("billing.changed") == 1


async def test_the_first_customer_id_is_kept(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    assert await store.save_customer(tenant.id, "cus_first", NOW) == "cus_first"
    assert await store.save_customer(tenant.id, "cus_second", NOW) == "cus_first"
    assert await store.tenant_for_customer("cus_first") == tenant.id
    assert await store.tenant_for_customer("cus_second") is None


async def test_usage_adds_up_per_month(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    await store.add_usage(tenant.id, "2027-01", state_changes=3, deliveries=1)
    await store.add_usage(tenant.id, "2027-01", state_changes=2, deliveries=0)
    await store.add_usage(tenant.id, "2027-02", state_changes=7, deliveries=4)

    assert await store.get_usage(tenant.id, "2027-01") == Usage("2027-01", 5, 1)
    assert await store.get_usage(tenant.id, "2027-02") == Usage("2027-02", 7, 4)


async def test_billing_rows_are_per_household(store: Store) -> None:
    """Each household sees its own billing only; the customer lookup names the right one."""
    a, _ = await tenant_with_user(store, "a")
    b, _ = await tenant_with_user(store, "b")
    await add_switch(store, b.id, "dev_b1", "B1")
    await store.save_billing(paid(a.id), event_id="evt_a", now=NOW)
    await store.save_billing(
        paid(b.id, plan_key="free", status="canceled"), suspended=["dev_b1"], now=NOW
    )
    await store.add_usage(b.id, "2027-01", state_changes=9, deliveries=9)

    state_a = await store.billing_state(a.id)
    assert state_a.subscription is not None
    assert state_a.subscription.plan_key == "pro"
    assert state_a.suspended == frozenset()
    assert await store.get_usage(a.id, "2027-01") == Usage("2027-01")
    assert not await store.stripe_event_seen(b.id, "evt_a")
    assert await store.tenant_for_customer(f"cus_{b.id}") == b.id
    assert (await store.billing_state(b.id)).suspended == frozenset({"dev_b1"})


async def test_a_deleted_device_leaves_no_suspension(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    await add_switch(store, tenant.id, "dev_a", "A")
    await store.save_billing(paid(tenant.id), suspended=["dev_a"], now=NOW)

    gone = switch(tenant.id, "dev_a", "A")
    await store.delete_device(tenant.id, "dev_a", removal(created(gone)), NOW, plan=PLAN)

    assert (await store.billing_state(tenant.id)).suspended == frozenset()


async def test_activity_is_pruned_by_each_households_plan(store: Store) -> None:
    """Pro keeps 90 days, free 7; a household whose plan was never enforced, the default."""
    pro, _ = await tenant_with_user(store, "pro")
    free, _ = await tenant_with_user(store, "free")
    bare, _ = await tenant_with_user(store, "bare")
    await store.save_billing(paid(pro.id, enforced_plan="pro"), now=NOW)
    await store.save_billing(paid(free.id, plan_key="free", enforced_plan="free"), now=NOW)
    old = NewActivity(kind="note", source="system", actor="t")
    for tenant, plan in ((pro, "pro"), (free, "free"), (bare, None)):
        # 30 days old: past the free plan's 7, within Pro's 90. "bare" has a row with no
        # enforced plan (never enforced): the default applies.
        await store.save_billing(
            paid(tenant.id, enforced_plan=plan), activity=(old,), now=NOW - 30 * 86400
        )

    removed = await store.prune_activity_by_plan(
        {"pro": NOW - 90 * 86400, "free": NOW - 7 * 86400}, default=NOW - 7 * 86400
    )

    assert removed == 2
    assert len(await store.list_activity(pro.id, limit=10)) == 1
    assert await store.list_activity(free.id, limit=10) == []
    assert await store.list_activity(bare.id, limit=10) == []
