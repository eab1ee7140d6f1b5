"""The settings page's API key form: a key limited to ticked devices, listed as such."""

from __future__ import annotations

import re

import pytest

from tests.ui.homes import Browse, Home, MakeApp, sign_in_home

SETTINGS = "/dashboard/settings"
NEW_KEY = re.compile(r'id="new-key" type="text" readonly value="(sr_[^"]+)"')


@pytest.fixture
async def home(make_app: MakeApp, browse: Browse) -> Home:
    """The household's admin, signed in."""
    return await sign_in_home(browse, make_app(), "sam@example.com")


async def test_the_form_offers_each_device_as_a_checkbox(home: Home) -> None:
    """Every device of the household can be ticked; without devices there is no fieldset."""
    assert "Only these devices" not in await home.browser.page(SETTINGS)
    lamp = await home.add_device("switch", "Lamp")
    fan = await home.add_device("switch", "Fan")
    page = await home.browser.page(SETTINGS)
    assert "Only these devices" in page
    for device_id, name in ((lamp, "Lamp"), (fan, "Fan")):
        assert f'name="device:{device_id}" value="on"> {name}' in page


async def test_ticked_devices_make_a_scoped_key(home: Home) -> None:
    """The key reaches the lamp only, and the key list says so."""
    lamp = await home.add_device("switch", "Lamp")
    fan = await home.add_device("switch", "Fan")
    made = await home.post(
        f"{SETTINGS}/keys", {"key_name": "ifttt", "scope": "write", f"device:{lamp}": "on"}
    )
    text = await made.text()
    assert made.status == 200, text
    secret = NEW_KEY.search(text)
    assert secret is not None
    (key,) = await home.core.auth.list_keys(home.principal)
    assert key.device_ids == (lamp,)
    listing = re.search(r'data-key-id="[^"]+">(.*?)</li>', text, re.S)
    assert listing is not None
    assert "Only Lamp" in listing.group(1)
    client = home.browser.client
    auth = {"Authorization": f"Bearer {secret.group(1)}"}
    assert (await client.get(f"/api/v1/devices/{lamp}", headers=auth)).status == 200
    assert (await client.get(f"/api/v1/devices/{fan}", headers=auth)).status == 404
    changed = await client.put(f"/api/v1/devices/{lamp}/state", json={"power": "ON"}, headers=auth)
    assert changed.status == 200


async def test_no_ticks_make_an_unrestricted_key(home: Home) -> None:
    """Leaving every box unticked keeps the old behaviour: every device."""
    await home.add_device("switch", "Lamp")
    made = await home.post(f"{SETTINGS}/keys", {"key_name": "script", "scope": "read"})
    assert made.status == 200
    (key,) = await home.core.auth.list_keys(home.principal)
    assert key.device_ids is None
    assert "data-key-devices" not in await made.text()


async def test_an_unknown_device_is_an_error_next_to_the_devices(home: Home) -> None:
    """A device deleted meanwhile (or a forged id) is a 422 shown on the fieldset."""
    lamp = await home.add_device("switch", "Lamp")
    made = await home.post(
        f"{SETTINGS}/keys",
        {"key_name": "ifttt", "scope": "write", f"device:{lamp}": "on", "device:dev_gone": "on"},
    )
    text = await made.text()
    assert made.status == 422
    assert 'id="device_ids-error"' in text
    assert "No device &#39;dev_gone&#39; in this household." in text
    assert f'name="device:{lamp}" value="on" checked>' in text
    assert 'value="ifttt"' in text
    assert await home.core.auth.list_keys(home.principal) == []


async def test_the_key_form_needs_the_csrf_token(home: Home) -> None:
    """Without the session's token the form is refused and no key is made."""
    lamp = await home.add_device("switch", "Lamp")
    response = await home.browser.client.post(
        f"{SETTINGS}/keys",
        data={"key_name": "ifttt", "scope": "write", f"device:{lamp}": "on"},
        allow_redirects=False,
    )
    assert response.status == 403
    assert await home.core.auth.list_keys(home.principal) == []
