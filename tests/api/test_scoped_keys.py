"""Device-scoped API keys: a key that reaches only chosen devices of its household."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from staterelay.core import Core
from tests.api.conftest import (
    API,
    Client,
    api_routes,
    assert_problem,
    assert_schema,
    create_device,
    create_webhook,
    fill,
)
from tests.conftest import Account, link_oauth_client

# A body each route accepts when the device is one the key reaches.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", f"{API}/devices/{{device_id}}"): {"name": "Renamed"},
    ("PUT", f"{API}/devices/{{device_id}}/state"): {"power": "ON"},
}


async def scoped_key(
    client: Client, account: Account, device_ids: list[str], scope: str = "write"
) -> dict[str, Any]:
    """Create a device-scoped key through the API; returns its JSON (with the secret)."""
    response = await client.post(
        f"{API}/keys",
        json={"name": "ifttt", "scope": scope, "device_ids": device_ids},
        headers=account.headers,
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    assert_schema("ApiKeyCreated", body)
    return body


def bearer(key: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a key just created."""
    return {"Authorization": f"Bearer {key['key']}"}


@pytest.fixture
async def home(client: Client, account: Account) -> dict[str, Any]:
    """A household with a lamp, a fan and a doorbell; a key limited to the lamp and doorbell."""
    lamp = await create_device(client, account, name="Lamp")
    fan = await create_device(client, account, name="Fan")
    bell = await create_device(client, account, type="button", name="Doorbell")
    key = await scoped_key(client, account, [lamp["id"], bell["id"], lamp["id"]])
    return {"lamp": lamp, "fan": fan, "bell": bell, "key": key, "headers": bearer(key)}


async def test_created_key_names_its_devices_once_and_lists_them(
    client: Client, account: Account, home: dict[str, Any]
) -> None:
    """The duplicate id is dropped; the list shows device_ids, null for an unrestricted key."""
    key = home["key"]
    assert key["device_ids"] == [home["lamp"]["id"], home["bell"]["id"]]
    listed = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    assert_schema("ApiKeyList", listed)
    by_id = {item["id"]: item["device_ids"] for item in listed["items"]}
    assert by_id[key["id"]] == [home["lamp"]["id"], home["bell"]["id"]]
    assert [ids for key_id, ids in by_id.items() if key_id != key["id"]] == [None]
    me = await (await client.get(f"{API}/me", headers=home["headers"])).json()
    assert_schema("Me", me)
    assert me["device_ids"] == sorted([home["lamp"]["id"], home["bell"]["id"]])


async def test_allowed_device_is_read_and_changed(client: Client, home: dict[str, Any]) -> None:
    """Read, rename, set state, read state and activity, press: all work on its devices."""
    headers = home["headers"]
    lamp = f"{API}/devices/{home['lamp']['id']}"
    assert (await client.get(lamp, headers=headers)).status == 200
    renamed = await client.patch(lamp, json={"name": "Porch light"}, headers=headers)
    assert renamed.status == 200, await renamed.text()
    assert (await renamed.json())["name"] == "Porch light"
    changed = await client.put(f"{lamp}/state", json={"power": "ON"}, headers=headers)
    assert changed.status == 200, await changed.text()
    state = await (await client.get(f"{lamp}/state", headers=headers)).json()
    assert state["state"]["power"] == "ON"
    activity = await (await client.get(f"{lamp}/activity", headers=headers)).json()
    assert {entry["kind"] for entry in activity["items"]} >= {"state", "device.updated"}
    pressed = await client.post(f"{API}/devices/{home['bell']['id']}/press", headers=headers)
    assert pressed.status == 200, await pressed.text()


async def test_every_device_route_answers_404_for_a_device_outside_the_key(
    client: Client, app: web.Application, account: Account, home: dict[str, Any]
) -> None:
    """The fan exists in the same household, yet the key gets what another tenant's id gets."""
    headers = home["headers"]
    templates = [
        (method, template) for method, template in api_routes(app) if "{device_id}" in template
    ]
    assert len(templates) == 7
    for method, template in templates:
        path = fill(template, device_id=home["fan"]["id"])
        response = await client.request(
            method, path, json=BODIES.get((method, template)), headers=headers
        )
        body = await assert_problem(response, 404, "not_found")
        assert body["detail"] == "no such device", (method, template)
    fan = await client.get(f"{API}/devices/{home['fan']['id']}", headers=account.headers)
    assert (await fan.json())["name"] == "Fan"
    assert (await fan.json())["version"] == home["fan"]["version"]


async def test_lists_show_only_the_keys_devices(
    client: Client, account: Account, home: dict[str, Any]
) -> None:
    """The device list and the household activity hold only the key's devices."""
    headers = home["headers"]
    await client.put(
        f"{API}/devices/{home['fan']['id']}/state", json={"power": "ON"}, headers=account.headers
    )
    devices = await (await client.get(f"{API}/devices", headers=headers)).json()
    assert [d["id"] for d in devices["items"]] == [home["lamp"]["id"], home["bell"]["id"]]
    first = await (await client.get(f"{API}/devices?limit=1", headers=headers)).json()
    assert [d["id"] for d in first["items"]] == [home["lamp"]["id"]]
    rest = await (
        await client.get(f"{API}/devices?limit=1&cursor={first['next_cursor']}", headers=headers)
    ).json()
    assert [d["id"] for d in rest["items"]] == [home["bell"]["id"]]
    assert rest["next_cursor"] is None
    activity = await (await client.get(f"{API}/activity", headers=headers)).json()
    assert activity["items"]
    assert {e["device_id"] for e in activity["items"]} == {home["lamp"]["id"], home["bell"]["id"]}
    fan_only = await client.get(f"{API}/activity?device_id={home['fan']['id']}", headers=headers)
    assert (await fan_only.json())["items"] == []
    everything = await (await client.get(f"{API}/activity", headers=account.headers)).json()
    assert home["fan"]["id"] in {e["device_id"] for e in everything["items"]}


async def test_creating_and_deleting_devices_is_refused(
    client: Client, account: Account, home: dict[str, Any]
) -> None:
    """403 with a message that says why; the device set is unchanged."""
    headers = home["headers"]
    made = await client.post(
        f"{API}/devices", json={"type": "switch", "name": "Sneaky"}, headers=headers
    )
    body = await assert_problem(made, 403, "forbidden")
    assert "device-scoped API key cannot create devices" in body["detail"]
    gone = await client.delete(f"{API}/devices/{home['lamp']['id']}", headers=headers)
    body = await assert_problem(gone, 403, "forbidden")
    assert "device-scoped API key cannot delete devices" in body["detail"]
    listed = await (await client.get(f"{API}/devices", headers=account.headers)).json()
    assert [d["name"] for d in listed["items"]] == ["Lamp", "Fan", "Doorbell"]


async def test_account_management_is_refused(
    client: Client, core: Core, account: Account, home: dict[str, Any]
) -> None:
    """Keys, webhooks, linked apps and integrations answer 403 to a device-scoped key."""
    webhook = await create_webhook(client, account, "https://example.com/hook")
    grant_id, _ = await link_oauth_client(core, account)
    own_key = home["key"]["id"]
    calls: list[tuple[str, str, Any]] = [
        ("GET", f"{API}/keys", None),
        ("POST", f"{API}/keys", {"name": "more", "scope": "read"}),
        ("POST", f"{API}/keys", {"name": "more", "scope": "read", "device_ids": []}),
        ("DELETE", f"{API}/keys/{own_key}", None),
        ("GET", f"{API}/webhooks", None),
        ("POST", f"{API}/webhooks", {"url": "https://example.com/other"}),
        ("GET", f"{API}/webhooks/{webhook['id']}", None),
        ("PATCH", f"{API}/webhooks/{webhook['id']}", {"enabled": False}),
        ("DELETE", f"{API}/webhooks/{webhook['id']}", None),
        ("POST", f"{API}/webhooks/{webhook['id']}/test", None),
        ("GET", f"{API}/grants", None),
        ("DELETE", f"{API}/grants/{grant_id}", None),
        ("GET", f"{API}/integrations/alexa", None),
    ]
    for method, path, payload in calls:
        response = await client.request(method, path, json=payload, headers=home["headers"])
        body = await assert_problem(response, 403, "forbidden")
        assert "device-scoped API key" in body["detail"], (method, path)
    keys = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    assert {item["id"]: item["revoked_at"] for item in keys["items"]}[own_key] is None
    assert (await client.get(f"{API}/devices", headers=home["headers"])).status == 200


async def test_a_read_scoped_device_key_cannot_change_its_device(
    client: Client, account: Account
) -> None:
    """Scope and device list both apply."""
    lamp = await create_device(client, account)
    key = await scoped_key(client, account, [lamp["id"]], scope="read")
    path = f"{API}/devices/{lamp['id']}/state"
    assert (await client.get(path, headers=bearer(key))).status == 200
    refused = await client.put(path, json={"power": "ON"}, headers=bearer(key))
    await assert_problem(refused, 403, "forbidden")


@pytest.mark.parametrize(
    ("device_ids", "detail"),
    [
        ("dev_x", "device_ids must be an array of strings or null"),
        ([1, 2], "device_ids must be an array of strings or null"),
        ({"id": "x"}, "device_ids must be an array of strings or null"),
        ([], "device_ids must name 1 to 50 devices"),
        (["dev_nothere"], "no device 'dev_nothere' in this household"),
    ],
)
async def test_bad_device_ids_are_422_naming_the_field(
    client: Client, account: Account, device_ids: Any, detail: str
) -> None:
    """Wrong JSON types, an empty list and unknown ids are refused; no key is made."""
    response = await client.post(
        f"{API}/keys",
        json={"name": "bad", "scope": "write", "device_ids": device_ids},
        headers=account.headers,
    )
    body = await assert_problem(response, 422, "invalid_value", field="device_ids")
    assert detail in body["detail"]
    keys = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    assert [item["name"] for item in keys["items"]] == ["test"]


async def test_another_households_device_cannot_be_named(
    client: Client, account: Account, other_account: Account
) -> None:
    """Mallory's device id is refused for Alice's key, exactly like an unknown id."""
    theirs = await create_device(client, other_account, name="Their lamp")
    mine = await create_device(client, account)
    response = await client.post(
        f"{API}/keys",
        json={"name": "x", "scope": "write", "device_ids": [mine["id"], theirs["id"]]},
        headers=account.headers,
    )
    body = await assert_problem(response, 422, "invalid_value", field="device_ids")
    assert body["detail"] == f"no device {theirs['id']!r} in this household"


async def test_too_many_devices_are_refused(client: Client, core: Core, account: Account) -> None:
    """At most 50 devices per key."""
    ids = [(await create_device(client, account, name=f"D{n}"))["id"] for n in range(51)]
    response = await client.post(
        f"{API}/keys",
        json={"name": "x", "scope": "write", "device_ids": ids},
        headers=account.headers,
    )
    await assert_problem(response, 422, "invalid_value", field="device_ids")
    assert (await scoped_key(client, account, ids[:50]))["device_ids"] == ids[:50]


async def test_unrestricted_key_creation_still_answers_null(
    client: Client, account: Account
) -> None:
    """Without device_ids (or with null) a key reaches every device."""
    for body in (
        {"name": "a", "scope": "read"},
        {"name": "b", "scope": "read", "device_ids": None},
    ):
        response = await client.post(f"{API}/keys", json=body, headers=account.headers)
        assert response.status == 201, await response.text()
        created = await response.json()
        assert created["device_ids"] is None
        assert (await client.get(f"{API}/devices", headers=bearer(created))).status == 200


async def test_the_live_feed_refuses_a_device_scoped_key(
    client: Client, home: dict[str, Any]
) -> None:
    """The household's live feed carries every device; a scoped key may not open it."""
    response = await client.get("/dashboard/ws", headers=home["headers"])
    assert response.status == 403
    assert "device-scoped" in (await response.json())["error"]
