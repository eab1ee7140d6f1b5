"""Actions: each one's effect through core, SKIP cases, and idempotency of IFTTT's retries."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.core.records import Device
from staterelay.settings import Settings
from tests.conftest import make_account
from tests.ifttt.conftest import V1, Client, DeviceFactory, Linked, MovableClock, link

DAY = 86400.0


async def act(
    client: Client, who: Linked, slug: str, fields: dict[str, Any], **headers: str
) -> tuple[int, Any]:
    """Run an action; (status, JSON)."""
    response = await client.post(
        f"{V1}/actions/{slug}",
        json={"actionFields": fields, "user": {"timezone": "UTC"}},
        headers={**who.headers, **headers},
    )
    return response.status, await response.json()


async def state(core: Core, who: Linked, device: Device, name: str) -> Any:
    """A property's current value."""
    return (await core.devices.get(who.principal, device.id)).properties[name].value


async def test_set_power_on_off_and_toggle(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """on, OFF (any case) and toggle, through core with source ifttt."""
    lamp = await make_device()
    assert (await act(client, alice, "set_power", {"device": lamp.id, "power": "on"}))[0] == 200
    assert await state(core, alice, lamp, "power") == "ON"
    await act(client, alice, "set_power", {"device": lamp.id, "power": "OFF"})
    assert await state(core, alice, lamp, "power") == "OFF"
    await act(client, alice, "set_power", {"device": lamp.id, "power": "toggle"})
    assert await state(core, alice, lamp, "power") == "ON"
    await act(client, alice, "set_power", {"device": lamp.id, "power": "Toggle"})
    assert await state(core, alice, lamp, "power") == "OFF"
    page = await core.activity.list(alice.principal, device_id=lamp.id, source="ifttt")
    assert len([entry for entry in page.items if entry.kind == "state"]) == 4
    assert page.items[0].cause == "IFTTT action set_power"


async def test_set_brightness_edges_and_applet_cause(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """0 (the dimmer goes off and keeps its level), 100 and "40%" are fine; the applet id is
    the change's cause."""
    dimmer = await make_device(type="dimmer", name="Ceiling")
    await core.devices.set_state(alice.principal, dimmer.id, {"brightness": 70}, source="api")
    for text, power, value in (("0", "OFF", 70), ("100", "ON", 100), ("40%", "ON", 40)):
        response = await client.post(
            f"{V1}/actions/set_brightness",
            json={
                "actionFields": {"device": dimmer.id, "brightness": text},
                "ifttt_source": {"id": "9876", "url": "https://ifttt.com/applets/9876"},
            },
            headers=alice.headers,
        )
        assert response.status == 200, text
        assert await state(core, alice, dimmer, "brightness") == value
        assert await state(core, alice, dimmer, "power") == power
    page = await core.activity.list(alice.principal, device_id=dimmer.id, source="ifttt")
    assert page.items[0].cause == "IFTTT applet 9876 (set_brightness)"
    for bad in ("-1", "101", "50.5", ""):
        status, body = await act(
            client, alice, "set_brightness", {"device": dimmer.id, "brightness": bad}
        )
        assert status == 400, bad
        assert body["errors"][0]["status"] == "SKIP"


async def test_set_sensor_value_for_each_sensor_type(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Temperatures parse as numbers within the plausible range; contact and motion
    sensors take detected / not detected (and true/false); nonsense is skipped."""
    porch = await make_device(type="temperature_sensor", name="Porch")
    door = await make_device(type="contact_sensor", name="Door")
    hall = await make_device(type="motion_sensor", name="Hall")
    assert (await act(client, alice, "set_sensor_value", {"device": porch.id, "value": "21.5"}))[
        0
    ] == 200
    assert (await state(core, alice, porch, "temperature"))["value"] == 21.5
    for device, text, value in (
        (door, "detected", "DETECTED"),
        (door, "Not Detected", "NOT_DETECTED"),
        (hall, "true", "DETECTED"),
        (hall, "no", "NOT_DETECTED"),
    ):
        status, _ = await act(
            client, alice, "set_sensor_value", {"device": device.id, "value": text}
        )
        assert status == 200, text
        assert await state(core, alice, device, "detection") == value
    for device, text in ((porch, "500"), (porch, "warm"), (door, "ajar"), (door, "")):
        status, body = await act(
            client, alice, "set_sensor_value", {"device": device.id, "value": text}
        )
        assert status == 400, text
        assert body["errors"][0]["status"] == "SKIP"


async def test_press_button(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """A press is an event on the button_pressed timeline."""
    bell = await make_device(type="button", name="Bell")
    status, body = await act(client, alice, "press_button", {"device": bell.id})
    assert status == 200
    assert body["data"][0]["id"] == f"{bell.id}:2"
    items = await core.ifttt.poll(
        alice.principal, "button_pressed", {"triggerFields": {"device": bell.id}}
    )
    assert items[0]["source"] == "ifttt"


async def test_a_retried_request_has_no_second_effect(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """The same X-Request-ID (sequential or concurrent) toggles once and answers the same
    id; another request id toggles again; ids are per user."""
    lamp = await make_device()
    fields = {"device": lamp.id, "power": "toggle"}
    first = await act(client, alice, "set_power", fields, **{"X-Request-ID": "req-1"})
    again = await act(client, alice, "set_power", fields, **{"X-Request-ID": "req-1"})
    assert first == again
    assert await state(core, alice, lamp, "power") == "ON"
    both = await asyncio.gather(
        *(act(client, alice, "set_power", fields, **{"X-Request-ID": "req-2"}) for _ in range(3))
    )
    assert both[0] == both[1] == both[2]
    assert await state(core, alice, lamp, "power") == "OFF"
    await act(client, alice, "set_power", fields, **{"X-Request-ID": "req-3"})
    assert await state(core, alice, lamp, "power") == "ON"
    bob = await link(core, "bob@example.com")
    await act(client, bob, "set_power", fields, **{"X-Request-ID": "req-3"})
    assert await state(core, alice, lamp, "power") == "OFF"


async def test_a_skipped_request_can_be_retried_after_the_problem_is_fixed(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Only carried-out requests are remembered: a SKIP leaves no record behind."""
    dimmer = await make_device(type="dimmer", name="Ceiling")
    status, _ = await act(
        client,
        alice,
        "set_brightness",
        {"device": dimmer.id, "brightness": "x"},
        **{"X-Request-ID": "req-s"},
    )
    assert status == 400
    status, _ = await act(
        client,
        alice,
        "set_brightness",
        {"device": dimmer.id, "brightness": "30"},
        **{"X-Request-ID": "req-s"},
    )
    assert status == 200
    assert await state(core, alice, dimmer, "brightness") == 30


async def test_request_ids_survive_a_restart_and_expire_after_a_day(settings: Settings) -> None:
    """A retry that reaches a restarted server is still recognised; a day later the id is
    forgotten."""
    clock = MovableClock()
    first = create_app(settings, clock=clock)
    async with TestClient(TestServer(first)) as client:
        core = first[CORE_KEY]
        alice = await link(core, "alice@example.com")
        lamp = await core.devices.create(alice.principal, type="switch", name="Lamp", source="api")
        fields = {"device": lamp.id, "power": "toggle"}
        answer = await act(client, alice, "set_power", fields, **{"X-Request-ID": "req-r"})
    second = create_app(settings, clock=clock)
    async with TestClient(TestServer(second)) as client:
        core = second[CORE_KEY]
        assert await act(client, alice, "set_power", fields, **{"X-Request-ID": "req-r"}) == answer
        alice.principal = await core.auth.authenticate(alice.token)
        assert await state(core, alice, lamp, "power") == "ON"
        clock.advance(DAY + 60)
        assert (await core.ifttt.prune()).requests == 1
        fresh = await link(core, "carol@example.com")
        await act(client, fresh, "set_power", fields, **{"X-Request-ID": "req-r"})
        assert await state(core, alice, lamp, "power") == "OFF"


async def test_a_personal_api_key_is_not_an_ifttt_token(
    client: Client, core: Core, make_device: DeviceFactory
) -> None:
    """IFTTT's user endpoints take only the linked app's OAuth token: an API key gets 401."""
    owner = await make_account(core, "keyholder@example.com")
    lamp = await make_device()
    headers = {"Authorization": f"Bearer {owner.key}"}
    response = await client.post(
        f"{V1}/actions/set_power",
        json={"actionFields": {"device": lamp.id, "power": "on"}},
        headers=headers,
    )
    assert response.status == 401
    assert "errors" in await response.json()
    polled = await client.post(
        f"{V1}/triggers/power_changed", json={"triggerFields": {"device": lamp.id}}, headers=headers
    )
    assert polled.status == 401


async def test_ten_concurrent_toggles_flip_ten_times(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Ten toggles at once with distinct request ids (ten Applets firing together): each
    reads the power inside its own write, so the switch flips exactly ten times, every
    answer names a different version, and the activity log has ten alternating entries."""
    lamp = await make_device()
    fields = {"device": lamp.id, "power": "toggle"}
    answers = await asyncio.gather(
        *(
            act(client, alice, "set_power", fields, **{"X-Request-ID": f"toggle-{n}"})
            for n in range(10)
        )
    )
    assert [status for status, _ in answers] == [200] * 10
    ids = {body["data"][0]["id"] for _, body in answers}
    assert len(ids) == 10
    device = await core.devices.get(alice.principal, lamp.id)
    assert device.version == lamp.version + 10
    assert device.properties["power"].value == "OFF"  # ten flips from OFF
    page = await core.activity.list(alice.principal, device_id=lamp.id, source="ifttt")
    values = [entry.new_value for entry in reversed(page.items) if entry.kind == "state"]
    assert values == ["ON", "OFF"] * 5
