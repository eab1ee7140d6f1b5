"""DeviceService semantics: transitions, events after commit, buttons, versions."""

from __future__ import annotations

from typing import Any

import pytest

from staterelay.core import Core
from staterelay.core.errors import Forbidden, InvalidInput, NotFound, PreconditionFailed
from staterelay.core.events import DeviceAdded, DeviceRemoved, StateChanged
from staterelay.core.records import Principal
from tests.conftest import Account


def principal_of(account: Account, scopes: tuple[str, ...] = ("read", "write")) -> Principal:
    """A principal for an account, as the API would build it."""
    return Principal(
        tenant_id=account.tenant_id,
        user_id=account.user_id,
        scopes=frozenset(scopes),
        credential="test",
        credential_id="t1",
    )


async def test_state_change_publishes_after_commit(core: Core, account: Account) -> None:
    """The bus event carries the committed device, and the store already has it."""
    me = principal_of(account)
    seen: list[Any] = []

    async def on_change(event: StateChanged) -> None:
        stored = await core.store.get_device(event.tenant_id, event.device.id)
        seen.append((event, stored))

    core.bus.subscribe(StateChanged, on_change)
    device = await core.devices.create(me, type="dimmer", name="Hall", source="api")
    after = await core.devices.set_state(
        me, device.id, {"power": "on", "brightness": 40}, source="api"
    )
    await core.bus.drain()
    assert after.version == 2
    assert after.properties["power"].value == "ON"
    ((event, stored),) = seen
    assert stored == event.device == after
    assert {c.name: (c.old, c.new) for c in event.changes} == {
        "power": ("OFF", "ON"),
        "brightness": (100, 40),
    }


async def test_same_value_is_no_event(core: Core, account: Account) -> None:
    """Setting a property to its current value writes nothing and publishes nothing."""
    me = principal_of(account)
    events: list[StateChanged] = []
    core.bus.subscribe(StateChanged, events.append)
    device = await core.devices.create(me, type="switch", name="Lamp", source="api")
    await core.devices.set_state(me, device.id, {"power": "OFF"}, source="api")
    again = await core.devices.get(me, device.id)
    assert again.version == 1
    assert events == []
    activity = await core.activity.list(me, device_id=device.id)
    assert [e.kind for e in activity.items] == ["device.created"]


async def test_button_press_is_always_an_event(core: Core, account: Account) -> None:
    """Each press is logged and published, even in quick succession."""
    me = principal_of(account)
    events: list[StateChanged] = []
    core.bus.subscribe(StateChanged, events.append)
    button = await core.devices.create(me, type="button", name="Doorbell", source="api")
    for _ in range(3):
        await core.devices.press(me, button.id, source="api")
    assert len(events) == 3
    assert all(e.pressed for e in events)
    kinds = [e.kind for e in (await core.activity.list(me, device_id=button.id)).items]
    assert kinds == ["press", "press", "press", "device.created"]
    lamp = await core.devices.create(me, type="switch", name="Lamp", source="api")
    with pytest.raises(InvalidInput):
        await core.devices.press(me, lamp.id, source="api")


async def test_if_version_mismatch(core: Core, account: Account) -> None:
    """A stale version is refused and changes nothing."""
    me = principal_of(account)
    device = await core.devices.create(me, type="switch", name="Lamp", source="api")
    with pytest.raises(PreconditionFailed):
        await core.devices.set_state(me, device.id, {"power": "ON"}, source="api", if_version=7)
    assert (await core.devices.get(me, device.id)).properties["power"].value == "OFF"
    done = await core.devices.set_state(me, device.id, {"power": "ON"}, source="api", if_version=1)
    assert done.version == 2


async def test_read_scope_cannot_write_and_tenants_are_isolated(
    core: Core, account: Account, other_account: Account
) -> None:
    """Scopes are enforced in core, and another tenant's id is simply not found."""
    me = principal_of(account)
    reader = principal_of(account, ("read",))
    intruder = principal_of(other_account)
    device = await core.devices.create(me, type="switch", name="Lamp", source="api")
    with pytest.raises(Forbidden):
        await core.devices.set_state(reader, device.id, {"power": "ON"}, source="api")
    for call in (
        core.devices.get(intruder, device.id),
        core.devices.set_state(intruder, device.id, {"power": "ON"}, source="api"),
        core.devices.delete(intruder, device.id, source="api"),
        core.devices.update(intruder, device.id, fields={"name": "x"}, source="api"),
    ):
        with pytest.raises(NotFound):
            await call
    assert (await core.devices.get(me, device.id)).properties["power"].value == "OFF"


async def test_lifecycle_events_and_rename(core: Core, account: Account) -> None:
    """Create, rename and delete publish events; the name becomes free after delete."""
    me = principal_of(account)
    added: list[DeviceAdded] = []
    removed: list[DeviceRemoved] = []
    core.bus.subscribe(DeviceAdded, added.append)
    core.bus.subscribe(DeviceRemoved, removed.append)
    device = await core.devices.create(me, type="motion_sensor", name="Porch", source="api")
    renamed = await core.devices.update(me, device.id, fields={"name": "Front porch"}, source="api")
    assert renamed.name == "Front porch"
    assert renamed.version == 2
    await core.devices.delete(me, device.id, source="api")
    assert [e.device.id for e in added] == [device.id]
    assert [e.device.id for e in removed] == [device.id]
    await core.devices.create(me, type="switch", name="front PORCH", source="api")
