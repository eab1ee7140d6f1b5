"""Rooms: through the REST API and its OpenAPI document, Alexa's discovery and IFTTT's lists."""

from __future__ import annotations

from typing import Any

from staterelay.core import Core
from staterelay.core.records import Device, PropertyState
from staterelay.integrations.alexa.endpoints import AlexaEndpoint
from tests.alexa.conftest import assert_valid
from tests.api.conftest import API, Client, assert_problem, assert_schema
from tests.conftest import Account


async def test_a_room_on_create_patch_and_list(client: Client, account: Account) -> None:
    """Trimmed, inner spaces collapsed; a room the household has is matched whatever the
    letter case; empty or null is no room; longer than 64 is refused naming the field."""
    made = await client.post(
        f"{API}/devices",
        json={"type": "switch", "name": "Fan", "room": "  Living   room "},
        headers=account.headers,
    )
    assert made.status == 201
    fan = await made.json()
    assert_schema("Device", fan)
    assert fan["room"] == "Living room"
    lamp = await (
        await client.post(
            f"{API}/devices",
            json={"type": "dimmer", "name": "Lamp", "room": "LIVING ROOM"},
            headers=account.headers,
        )
    ).json()
    assert lamp["room"] == "Living room"
    bare = await (
        await client.post(
            f"{API}/devices", json={"type": "button", "name": "Bell"}, headers=account.headers
        )
    ).json()
    assert bare["room"] == ""
    moved = await client.patch(
        f"{API}/devices/{fan['id']}", json={"room": "Garage"}, headers=account.headers
    )
    assert (await moved.json())["room"] == "Garage"
    cleared = await client.patch(
        f"{API}/devices/{fan['id']}", json={"room": None}, headers=account.headers
    )
    assert (await cleared.json())["room"] == ""
    listed = await (await client.get(f"{API}/devices", headers=account.headers)).json()
    assert [d["room"] for d in listed["items"]] == ["", "Living room", ""]
    too_long = await client.patch(
        f"{API}/devices/{fan['id']}", json={"room": "x" * 65}, headers=account.headers
    )
    await assert_problem(too_long, 422, "invalid_value", field="room")
    wrong = await client.post(
        f"{API}/devices", json={"type": "switch", "name": "X", "room": 5}, headers=account.headers
    )
    assert wrong.status in (400, 422)


def test_the_openapi_document_carries_the_room(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "room" in schemas["Device"]["required"]
    for name in ("DeviceCreate", "DeviceUpdate"):
        assert schemas[name]["properties"]["room"]["maxLength"] == 64


def device(room: str, description: str = "") -> Device:
    """A switch in ``room``."""
    return Device(
        seq=1,
        id="dev_fan",
        tenant_id="t",
        type="switch",
        name="Fan",
        description=description,
        options={},
        properties={"power": PropertyState("OFF", 1.0)},
        version=1,
        created_at=1.0,
        updated_at=1.0,
        room=room,
    )


def test_alexa_shows_the_room_in_the_description() -> None:
    """Room first; never longer than Amazon's 128 characters; schema-valid discovery."""
    assert AlexaEndpoint(device("")).discovery()["description"] == ("Virtual switch by StateRelay")
    shown = AlexaEndpoint(device("Kitchen")).discovery()
    assert shown["description"] == "Kitchen · Virtual switch by StateRelay"
    long = AlexaEndpoint(device("r" * 64, "d" * 128)).discovery()["description"]
    assert len(long) == 128
    assert long.startswith("r" * 64 + " · ")
    assert long.endswith("…")
    assert_valid(
        {
            "event": {
                "header": {
                    "namespace": "Alexa.Discovery",
                    "name": "Discover.Response",
                    "payloadVersion": "3",
                    "messageId": "0a58ace0-e6ab-47de-b6af-b600b5ab8a7a",
                },
                "payload": {"endpoints": [shown]},
            }
        }
    )


async def test_ifttt_device_options_name_the_room(core: Core, account: Account) -> None:
    principal = await core.auth.authenticate(account.key)
    await core.devices.create(principal, type="switch", name="Fan", room="Kitchen", source="api")
    await core.devices.create(principal, type="switch", name="Porch", source="api")
    options = await core.ifttt.options(principal, "actions", "set_power", "device")
    assert [option["label"] for option in options] == ["Fan (Kitchen)", "Porch"]
