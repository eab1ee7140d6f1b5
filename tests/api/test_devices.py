"""Device routes: CRUD, state changes with versions and ETags, presses, activity and paging."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import API, Client, assert_problem, assert_schema, create_device
from tests.conftest import Account


async def _activity(client: Client, account: Account, device_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/devices/{device_id}/activity", headers=account.headers)
    assert response.status == 200
    body = await response.json()
    assert_schema("ActivityList", body)
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_device_crud_round_trip(client: Client, account: Account) -> None:
    """Create, read, list, change and delete a device, with Location, ETag and schemas."""
    created = await client.post(
        f"{API}/devices",
        json={"type": "switch", "name": " Porch light ", "description": "by the door"},
        headers=account.headers,
    )
    assert created.status == 201
    device = await created.json()
    assert_schema("Device", device)
    assert created.headers["Location"] == f"{API}/devices/{device['id']}"
    assert created.headers["ETag"] == '"1"'
    assert device["name"] == "Porch light"
    assert device["description"] == "by the door"
    assert device["state"] == {"power": "OFF"}
    assert device["version"] == 1
    assert device["options"] == {}
    assert set(device["state_changed_at"]) == {"power"}

    fetched = await client.get(created.headers["Location"], headers=account.headers)
    assert fetched.status == 200
    assert fetched.headers["ETag"] == '"1"'
    assert await fetched.json() == device

    listed = await client.get(f"{API}/devices", headers=account.headers)
    body = await listed.json()
    assert_schema("DeviceList", body)
    assert body == {"items": [device], "next_cursor": None}

    patched = await client.patch(
        f"{API}/devices/{device['id']}",
        json={"name": "Porch", "description": None, "options": {"routine_trigger": True}},
        headers=account.headers,
    )
    assert patched.status == 200
    changed = await patched.json()
    assert patched.headers["ETag"] == '"2"'
    assert changed["name"] == "Porch"
    assert changed["description"] == ""
    assert changed["options"] == {"routine_trigger": True}
    assert changed["version"] == 2
    assert changed["state"] == device["state"]
    again = await client.get(f"{API}/devices/{device['id']}", headers=account.headers)
    assert await again.json() == changed

    deleted = await client.delete(f"{API}/devices/{device['id']}", headers=account.headers)
    assert deleted.status == 204
    assert await deleted.read() == b""
    gone = await client.get(f"{API}/devices/{device['id']}", headers=account.headers)
    await assert_problem(gone, 404, "not_found")
    twice = await client.delete(f"{API}/devices/{device['id']}", headers=account.headers)
    await assert_problem(twice, 404, "not_found")
    empty = await client.get(f"{API}/devices", headers=account.headers)
    assert (await empty.json())["items"] == []


async def test_create_refuses_bad_values(client: Client, account: Account) -> None:
    """Core's rules surface as 422 with the field at fault; a duplicate name is 409."""
    bad_type = await client.post(
        f"{API}/devices", json={"type": "toaster", "name": "T"}, headers=account.headers
    )
    await assert_problem(bad_type, 422, "invalid_value", field="type")
    bad_option = await client.post(
        f"{API}/devices",
        json={"type": "switch", "name": "S", "options": {"scale": "CELSIUS"}},
        headers=account.headers,
    )
    await assert_problem(bad_option, 422, "unknown_field", field="options.scale")
    await create_device(client, account, name="Lamp")
    duplicate = await client.post(
        f"{API}/devices", json={"type": "dimmer", "name": "lamp"}, headers=account.headers
    )
    await assert_problem(duplicate, 409, "conflict", field="name")


async def test_put_state_changes_state_version_etag_and_logs_activity(
    client: Client, account: Account
) -> None:
    """A state change bumps the version and ETag and writes an activity row with old and new."""
    device = await create_device(client, account, type="dimmer", name="Hall")
    response = await client.put(
        f"{API}/devices/{device['id']}/state",
        json={"power": "on", "brightness": 40},
        headers=account.headers,
    )
    assert response.status == 200
    state = await response.json()
    assert_schema("DeviceState", state)
    assert response.headers["ETag"] == '"2"'
    assert state["device_id"] == device["id"]
    assert state["state"] == {"power": "ON", "brightness": 40}
    assert state["version"] == 2
    assert state["state_changed_at"]["power"] > device["state_changed_at"]["power"]

    read = await client.get(f"{API}/devices/{device['id']}/state", headers=account.headers)
    assert read.headers["ETag"] == '"2"'
    assert await read.json() == state

    second = await client.put(
        f"{API}/devices/{device['id']}/state", json={"power": "OFF"}, headers=account.headers
    )
    assert (await second.json())["state"] == {"power": "OFF", "brightness": 40}

    rows = await _activity(client, account, device["id"])
    changes = [
        (r["property"], r["old_value"], r["new_value"]) for r in rows if r["kind"] == "state"
    ]
    # Newest first: the second request's change, then the first request's two.
    assert changes[0] == ("power", "ON", "OFF")
    assert sorted(changes[1:]) == [("brightness", 100, 40), ("power", "OFF", "ON")]
    assert rows[-1]["kind"] == "device.created"
    assert all(row["source"] == "api" for row in rows)
    assert all(row["device_id"] == device["id"] for row in rows)
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), reverse=True)


async def test_same_value_again_is_no_change(client: Client, account: Account) -> None:
    """Setting a property to its current value writes no activity and keeps the version."""
    device = await create_device(client, account)
    url = f"{API}/devices/{device['id']}/state"
    first = await client.put(url, json={"power": "ON"}, headers=account.headers)
    assert (await first.json())["version"] == 2
    before = await _activity(client, account, device["id"])
    again = await client.put(url, json={"power": True}, headers=account.headers)
    assert again.status == 200
    assert again.headers["ETag"] == '"2"'
    assert (await again.json())["version"] == 2
    assert await _activity(client, account, device["id"]) == before


@pytest.mark.parametrize("header", ['"1"', "1", 'W/"1"', " 1 ", "*"])
async def test_if_match_forms_accepted(client: Client, account: Account, header: str) -> None:
    """The current version matches quoted, bare or weak; ``*`` matches any version."""
    device = await create_device(client, account)
    response = await client.put(
        f"{API}/devices/{device['id']}/state",
        json={"power": "ON"},
        headers={**account.headers, "If-Match": header},
    )
    assert response.status == 200
    assert response.headers["ETag"] == '"2"'


async def test_if_match_mismatch_is_412_and_changes_nothing(
    client: Client, account: Account
) -> None:
    """A stale version is refused on PUT state, PATCH and DELETE, and the device is untouched."""
    device = await create_device(client, account)
    url = f"{API}/devices/{device['id']}"
    ok = await client.put(
        f"{url}/state", json={"power": "ON"}, headers={**account.headers, "If-Match": '"1"'}
    )
    assert ok.status == 200
    stale = {**account.headers, "If-Match": '"1"'}
    await assert_problem(
        await client.put(f"{url}/state", json={"power": "OFF"}, headers=stale),
        412,
        "version_mismatch",
    )
    await assert_problem(
        await client.patch(url, json={"name": "Other"}, headers=stale), 412, "version_mismatch"
    )
    await assert_problem(await client.delete(url, headers=stale), 412, "version_mismatch")
    current = await (await client.get(url, headers=account.headers)).json()
    assert current["state"] == {"power": "ON"}
    assert current["name"] == "Lamp"
    assert current["version"] == 2
    fresh = await client.delete(url, headers={**account.headers, "If-Match": '"2"'})
    assert fresh.status == 204


@pytest.mark.parametrize("header", ["abc", '"1", "2"', '"-1"', "1.5", 'W/"x"', ""])
async def test_unparseable_if_match_is_400(client: Client, account: Account, header: str) -> None:
    """An If-Match that is not one version is a bad request, before anything changes."""
    device = await create_device(client, account)
    response = await client.put(
        f"{API}/devices/{device['id']}/state",
        json={"power": "ON"},
        headers={**account.headers, "If-Match": header},
    )
    await assert_problem(response, 400, "bad_request", field="If-Match")
    state = await client.get(f"{API}/devices/{device['id']}/state", headers=account.headers)
    assert (await state.json())["state"] == {"power": "OFF"}


async def test_press_button_logs_every_press(client: Client, account: Account) -> None:
    """Each press is an activity row and a new version, even though nothing else changes."""
    button = await create_device(client, account, type="button", name="Doorbell")
    assert button["state"] == {"last_pressed_at": None}
    url = f"{API}/devices/{button['id']}/press"
    first = await client.post(url, headers=account.headers)
    assert first.status == 200
    pressed = await first.json()
    assert_schema("DeviceState", pressed)
    assert pressed["version"] == 2
    assert first.headers["ETag"] == '"2"'
    assert isinstance(pressed["state"]["last_pressed_at"], str)
    second = await client.post(url, headers=account.headers)
    assert (await second.json())["version"] == 3
    presses = [
        row for row in await _activity(client, account, button["id"]) if row["kind"] == "press"
    ]
    assert len(presses) == 2
    assert all(row["source"] == "api" for row in presses)
    assert presses[0]["old_value"] == presses[1]["new_value"]

    set_button = await client.put(
        f"{API}/devices/{button['id']}/state",
        json={"last_pressed_at": "2026-01-01T00:00:00.000Z"},
        headers=account.headers,
    )
    await assert_problem(set_button, 422, "invalid_value")


async def test_press_on_a_switch_is_422(client: Client, account: Account) -> None:
    """Only buttons can be pressed; the switch keeps its version and log."""
    switch = await create_device(client, account)
    response = await client.post(f"{API}/devices/{switch['id']}/press", headers=account.headers)
    await assert_problem(response, 422, "invalid_value")
    after = await client.get(f"{API}/devices/{switch['id']}", headers=account.headers)
    assert (await after.json())["version"] == 1
    kinds = [row["kind"] for row in await _activity(client, account, switch["id"])]
    assert kinds == ["device.created"]


@pytest.mark.parametrize(
    ("values", "status", "code", "field"),
    [
        ({"brightness": 101}, 422, "value_out_of_range", "brightness"),
        ({"brightness": 40.5}, 422, "invalid_value", "brightness"),
        ({"power": "MAYBE"}, 422, "invalid_value", "power"),
        ({"colour": "red"}, 422, "unknown_field", "colour"),
        ({}, 422, "invalid_value", None),
    ],
)
async def test_put_state_refuses_bad_values(
    client: Client,
    account: Account,
    values: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    """Core's property rules answer 422 naming the property, and nothing changes."""
    dimmer = await create_device(client, account, type="dimmer", name="Desk")
    response = await client.put(
        f"{API}/devices/{dimmer['id']}/state", json=values, headers=account.headers
    )
    await assert_problem(response, status, code, field=field)
    after = await client.get(f"{API}/devices/{dimmer['id']}", headers=account.headers)
    assert await after.json() == dimmer


async def test_temperature_state_takes_number_or_object(client: Client, account: Account) -> None:
    """A temperature sensor takes a bare reading or a value with a scale."""
    sensor = await create_device(
        client, account, type="temperature_sensor", name="Attic", options={"scale": "FAHRENHEIT"}
    )
    url = f"{API}/devices/{sensor['id']}/state"
    bare = await client.put(url, json={"temperature": 71.5}, headers=account.headers)
    assert (await bare.json())["state"]["temperature"] == {"value": 71.5, "scale": "FAHRENHEIT"}
    scaled = await client.put(
        url, json={"temperature": {"value": 21, "scale": "CELSIUS"}}, headers=account.headers
    )
    assert (await scaled.json())["state"]["temperature"] == {"value": 21.0, "scale": "CELSIUS"}


async def test_device_pages_follow_cursors(client: Client, account: Account) -> None:
    """More devices than the limit come back in creation order across pages, each once."""
    created = [(await create_device(client, account, name=f"Lamp {i}"))["id"] for i in range(7)]
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"{API}/devices", params=query, headers=account.headers)
        page = await response.json()
        assert_schema("DeviceList", page)
        sizes.append(len(page["items"]))
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created
    assert sizes == [3, 3, 1]


async def test_activity_pages_follow_cursors(client: Client, account: Account) -> None:
    """A device's activity pages newest first without gaps or repeats; so does /activity.

    The first level also switches the dimmer on (a second activity row of that change)."""
    device = await create_device(client, account, type="dimmer", name="Den")
    for level in (10, 20, 30, 40, 50):
        response = await client.put(
            f"{API}/devices/{device['id']}/state",
            json={"brightness": level},
            headers=account.headers,
        )
        assert response.status == 200
    for url in (f"{API}/devices/{device['id']}/activity", f"{API}/activity"):
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = await (await client.get(url, params=query, headers=account.headers)).json()
            assert len(page["items"]) <= 2
            rows.extend(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 4
        assert [row["new_value"] for row in rows[:6]] == [50, 40, 30, 20, "ON", 10]
        assert rows[6]["kind"] == "device.created"
        ids = [row["id"] for row in rows]
        assert ids == sorted(set(ids), reverse=True)


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/devices", {"cursor": "not a cursor!"}, "cursor"),
        ("/activity", {"cursor": "%%%"}, "cursor"),
        ("/devices", {"limit": "0"}, "limit"),
        ("/devices", {"limit": "201"}, "limit"),
        ("/webhooks", {"limit": "ten"}, "limit"),
        ("/activity", {"source": "telepathy"}, "source"),
    ],
)
async def test_bad_list_parameters_are_400(
    client: Client, account: Account, path: str, query: dict[str, str], field: str
) -> None:
    """A malformed cursor, a limit out of range or an unknown source is a bad request."""
    response = await client.get(f"{API}{path}", params=query, headers=account.headers)
    await assert_problem(response, 400, "bad_request", field=field)


async def test_cursor_of_another_list_is_400(client: Client, account: Account) -> None:
    """A devices cursor is not an activity cursor."""
    for i in range(3):
        await create_device(client, account, name=f"Lamp {i}")
    page = await (
        await client.get(f"{API}/devices", params={"limit": "1"}, headers=account.headers)
    ).json()
    assert page["next_cursor"]
    response = await client.get(
        f"{API}/activity", params={"cursor": page["next_cursor"]}, headers=account.headers
    )
    await assert_problem(response, 400, "bad_request", field="cursor")


async def test_activity_filters_by_device_and_source(client: Client, account: Account) -> None:
    """``device_id`` and ``source`` narrow the household's activity."""
    lamp = await create_device(client, account, name="Lamp")
    fan = await create_device(client, account, name="Fan")
    await client.put(
        f"{API}/devices/{fan['id']}/state", json={"power": "ON"}, headers=account.headers
    )
    only_fan = await (
        await client.get(
            f"{API}/activity", params={"device_id": fan["id"]}, headers=account.headers
        )
    ).json()
    assert {row["device_id"] for row in only_fan["items"]} == {fan["id"]}
    assert len(only_fan["items"]) == 2
    from_ui = await (
        await client.get(f"{API}/activity", params={"source": "ui"}, headers=account.headers)
    ).json()
    assert from_ui["items"] == []
    from_api = await (
        await client.get(f"{API}/activity", params={"source": "api"}, headers=account.headers)
    ).json()
    assert {row["device_id"] for row in from_api["items"]} == {lamp["id"], fan["id"]}


async def test_brightness_zero_switches_a_dimmer_off_and_on_restores_its_level(
    client: Client, account: Account
) -> None:
    """No dimmer is ever "on at 0 %": 0 switches it off and keeps 43 for the next "on"."""
    den = await create_device(client, account, type="dimmer", name="Den")
    url = f"{API}/devices/{den['id']}/state"

    async def put(body: dict[str, Any]) -> dict[str, Any]:
        response = await client.put(url, json=body, headers=account.headers)
        assert response.status == 200, await response.text()
        state: dict[str, Any] = (await response.json())["state"]
        return state

    assert await put({"brightness": 43}) == {"power": "ON", "brightness": 43}
    assert await put({"brightness": 0}) == {"power": "OFF", "brightness": 43}
    assert await put({"power": "ON"}) == {"power": "ON", "brightness": 43}
    assert await put({"power": "ON", "brightness": 0}) == {"power": "OFF", "brightness": 43}
    assert await put({"power": "OFF", "brightness": 70}) == {"power": "OFF", "brightness": 70}
