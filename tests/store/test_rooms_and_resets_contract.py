"""Store contract for rooms and password resets, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses

import pytest

from staterelay.core.errors import NotFound
from staterelay.core.records import DeviceChange, NewActivity
from staterelay.core.records.accounts import PasswordReset, Session
from staterelay.store import Store
from tests.store.planning import PLAN
from tests.store.test_contract import NOW, switch, tenant_with_user


async def test_a_device_keeps_its_room_through_create_change_and_list(store: Store) -> None:
    tenant, _ = await tenant_with_user(store, "a")
    made, _, _ = await store.create_device(
        dataclasses.replace(switch(tenant.id, "dev_1", "Fan"), room="Kitchen"),
        _activity(),
        (),
        plan=PLAN,
    )
    assert made.room == "Kitchen"
    assert (await store.get_device(tenant.id, "dev_1")).room == "Kitchen"  # type: ignore[union-attr]
    moved = await store.change_device(
        tenant.id, "dev_1", lambda current: DeviceChange(room="Garden"), NOW + 1, plan=PLAN
    )
    assert (moved.before.room, moved.after.room) == ("Kitchen", "Garden")
    (listed,) = await store.list_devices(tenant.id, after_seq=None, limit=10)
    assert listed.room == "Garden"
    state = await store.change_device(
        tenant.id,
        "dev_1",
        lambda current: DeviceChange(properties={"power": "ON"}),
        NOW + 2,
        plan=PLAN,
    )
    assert state.after.room == "Garden"  # a state change leaves the room alone
    cleared = await store.change_device(
        tenant.id, "dev_1", lambda current: DeviceChange(room=""), NOW + 3, plan=PLAN
    )
    assert cleared.after.room == ""
    assert (await store.get_device(tenant.id, "dev_1")).room == ""  # type: ignore[union-attr]


async def test_a_reset_is_used_once_and_ends_every_session(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    for n in range(2):
        await store.create_session(
            Session(f"ses_{n}", tenant.id, user.id, NOW, NOW, NOW + 3600, "127.0.0.1", "x"),
            f"session-digest-{n}",
        )
    reset = PasswordReset("rst_1", tenant.id, user.id, None, NOW, NOW + 1800)
    other = PasswordReset("rst_2", tenant.id, user.id, None, NOW, NOW + 1800)
    await store.create_password_reset(reset, "digest-1")
    await store.create_password_reset(other, "digest-2")
    assert await store.find_password_reset("digest-1") == reset
    changed = await store.use_password_reset("digest-1", tenant.id, "new-hash", NOW + 60)
    assert (changed.id, changed.password_hash) == (user.id, "new-hash")
    assert await store.list_sessions(tenant.id, user.id) == []
    used = await store.find_password_reset("digest-1")
    assert used is not None
    assert used.used_at == NOW + 60
    with pytest.raises(NotFound):
        await store.use_password_reset("digest-1", tenant.id, "again", NOW + 61)
    with pytest.raises(NotFound):  # the user's other links died with the first one used
        await store.use_password_reset("digest-2", tenant.id, "again", NOW + 61)


async def test_an_expired_reset_or_another_tenants_changes_nothing(store: Store) -> None:
    tenant, user = await tenant_with_user(store, "a")
    stranger, _ = await tenant_with_user(store, "b")
    await store.create_password_reset(
        PasswordReset("rst_1", tenant.id, user.id, None, NOW, NOW + 1800), "digest-1"
    )
    with pytest.raises(NotFound):
        await store.use_password_reset("digest-1", stranger.id, "hash", NOW + 1)
    with pytest.raises(NotFound):
        await store.use_password_reset("digest-1", tenant.id, "hash", NOW + 1800)
    again = await store.get_user(tenant.id, user.id)
    assert again is not None
    assert again.password_hash is None


async def test_users_listed_and_passwords_set(store: Store) -> None:
    a, alice = await tenant_with_user(store, "a")
    b, bob = await tenant_with_user(store, "b")
    assert [u.id for u in await store.list_users()] == [alice.id, bob.id]
    assert [u.id for u in await store.list_users(b.id)] == [bob.id]
    await store.create_session(
        Session("ses_1", a.id, alice.id, NOW, NOW, NOW + 3600, "127.0.0.1", "x"), "d1"
    )
    assert await store.set_password(a.id, alice.id, "h") == 1
    with pytest.raises(NotFound):
        await store.set_password(a.id, bob.id, "h")


async def test_instance_facts(store: Store) -> None:
    assert await store.instance_fact("seen:x") is None
    await store.set_instance_fact("seen:x", "1.5")
    await store.set_instance_fact("seen:x", "2.5")
    assert await store.instance_fact("seen:x") == "2.5"
    await store.set_instance_fact("seen:x", None)
    assert await store.instance_fact("seen:x") is None


def _activity() -> NewActivity:
    return NewActivity(kind="device.created", source="api", actor=None, device_id="dev_1")
