"""Device-scoped keys in core: the principal carries the devices, services enforce them."""

from __future__ import annotations

import dataclasses

import pytest

from staterelay.core import Core, devices as devices_module
from staterelay.core.errors import Forbidden, InvalidInput, NotFound
from staterelay.core.records import Principal
from tests.conftest import Account


async def _household(core: Core, account: Account, count: int) -> tuple[Principal, list[str]]:
    owner = await core.auth.authenticate(account.key)
    ids = [
        (await core.devices.create(owner, type="switch", name=f"D{n}", source="api")).id
        for n in range(count)
    ]
    return owner, ids


async def test_the_principal_of_a_scoped_key_carries_its_devices(
    core: Core, account: Account
) -> None:
    """Authenticated (and again from the cache), the key's devices come along."""
    owner, ids = await _household(core, account, 3)
    assert owner.device_ids is None
    user = await core.users.get(account.tenant_id, account.user_id)
    _, secret = await core.auth.create_api_key(
        user, name="ifttt", scope="write", device_ids=[ids[2], ids[0], ids[2]]
    )
    for _ in range(2):
        principal = await core.auth.authenticate(secret)
        assert principal.device_ids == frozenset({ids[0], ids[2]})
        assert principal.reaches(ids[0])
        assert not principal.reaches(ids[1])


async def test_listing_skips_other_devices_across_scan_batches(
    core: Core, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages hold only reachable devices even when the scan needs several store reads."""
    monkeypatch.setattr(devices_module, "_SCAN_BATCH", 2)
    owner, ids = await _household(core, account, 9)
    wanted = [ids[1], ids[4], ids[5], ids[8]]
    scoped = dataclasses.replace(owner, device_ids=frozenset(wanted))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await core.devices.list(scoped, cursor=cursor, limit=3)
        assert len(page.items) <= 3
        seen.extend(device.id for device in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == wanted


async def test_services_refuse_what_a_scoped_key_may_not_do(core: Core, account: Account) -> None:
    """Other devices are NotFound; the device set and the account are Forbidden."""
    owner, (lamp, fan) = await _household(core, account, 2)
    scoped = dataclasses.replace(owner, device_ids=frozenset({lamp}))
    assert (await core.devices.get(scoped, lamp)).id == lamp
    for call in (
        core.devices.get(scoped, fan),
        core.devices.set_state(scoped, fan, {"power": "ON"}, source="api"),
        core.devices.update(scoped, fan, fields={"name": "x"}, source="api"),
        core.devices.press(scoped, fan, source="api"),
        core.devices.delete(scoped, fan, source="api"),
        core.activity.list(scoped, device_id=fan, require_device=True),
    ):
        with pytest.raises(NotFound, match="no such device"):
            await call
    with pytest.raises(Forbidden, match="cannot create devices"):
        await core.devices.create(scoped, type="switch", name="x", source="api")
    with pytest.raises(Forbidden, match="cannot delete devices"):
        await core.devices.delete(scoped, lamp, source="api")
    with pytest.raises(Forbidden, match="cannot manage API keys"):
        await core.auth.list_keys(scoped)
    with pytest.raises(Forbidden, match="cannot manage API keys"):
        await core.webhooks.list(scoped)
    with pytest.raises(Forbidden, match="cannot manage API keys"):
        await core.oauth.list_grants(scoped)
    assert (await core.devices.get(owner, fan)).version == 1


async def test_a_new_key_names_only_existing_devices_of_the_tenant(
    core: Core, account: Account
) -> None:
    """Unknown ids, empty and oversized lists and non-lists are InvalidInput on device_ids."""
    _, (lamp,) = await _household(core, account, 1)
    user = await core.users.get(account.tenant_id, account.user_id)
    for bad in ("dev_x", [lamp, 3], [], ["dev_nothere"], [lamp] + [f"d{n}" for n in range(50)]):
        with pytest.raises(InvalidInput) as caught:
            await core.auth.create_api_key(user, name="x", scope="write", device_ids=bad)
        assert caught.value.field == "device_ids"
    key, _ = await core.auth.create_api_key(user, name="x", scope="read", device_ids=(lamp,))
    assert key.device_ids == (lamp,)
