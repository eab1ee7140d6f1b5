"""Triggers: ingredients of each, threshold crossings, options, validation, identities, upkeep."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from staterelay.core import Core
from staterelay.settings import Settings
from tests.ifttt.conftest import (
    V1,
    Client,
    DeviceFactory,
    Linked,
    MovableClock,
    SchemaCheck,
    poll,
    set_state,
)

DAY = 86400.0


async def test_power_changed_ingredients(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Device name and id, power and previous power, when, cause and source, as strings."""
    lamp = await make_device()
    await core.devices.set_state(
        alice.principal, lamp.id, {"power": "ON"}, source="alexa", cause="voice"
    )
    _, body = await poll(client, alice, "power_changed", {"triggerFields": {"device": lamp.id}})
    item = body["data"][0]
    meta = item.pop("meta")
    assert item == {
        "device_name": "Desk lamp",
        "device_id": lamp.id,
        "power": "on",
        "previous_power": "off",
        "changed_at": item["changed_at"],
        "cause": "voice",
        "source": "alexa",
    }
    assert item["changed_at"].endswith("+00:00")
    assert meta["timestamp"] == int(core.clock()) or abs(meta["timestamp"] - core.clock()) < 3


async def test_brightness_and_sensor_ingredients(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Brightness as "75"; contact and motion readings; temperatures with their scale."""
    dimmer = await make_device(type="dimmer", name="Ceiling")
    await set_state(core, alice, dimmer, brightness=75)
    await set_state(core, alice, dimmer, power="ON")
    _, body = await poll(
        client, alice, "brightness_changed", {"triggerFields": {"device": dimmer.id}}
    )
    [item] = body["data"]
    assert (item["brightness"], item["previous_brightness"]) == ("75", "100")
    door = await make_device(type="contact_sensor", name="Door")
    hall = await make_device(type="motion_sensor", name="Hall motion")
    oven = await make_device(
        type="temperature_sensor", name="Oven", options={"scale": "FAHRENHEIT"}
    )
    await set_state(core, alice, door, detection="DETECTED")
    await set_state(core, alice, hall, detection=True)
    await set_state(core, alice, oven, temperature=98.6)
    found = {}
    for device in (door, hall, oven):
        _, body = await poll(
            client, alice, "sensor_value_changed", {"triggerFields": {"device": device.id}}
        )
        found[device.name] = body["data"][0]
    assert (found["Door"]["value"], found["Door"]["previous_value"]) == (
        "DETECTED",
        "NOT_DETECTED",
    )
    assert found["Door"]["sensor"] == "detection"
    assert found["Hall motion"]["value"] == "DETECTED"
    assert (found["Oven"]["value"], found["Oven"]["previous_value"]) == ("98.6", "68")
    assert (found["Oven"]["sensor"], found["Oven"]["scale"]) == ("temperature", "FAHRENHEIT")


async def test_button_pressed_ingredients(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Every press is an event, with when it happened."""
    bell = await make_device(type="button", name="Doorbell")
    for _ in range(3):
        await core.devices.press(alice.principal, bell.id, source="api")
    _, body = await poll(client, alice, "button_pressed", {"triggerFields": {"device": bell.id}})
    assert len(body["data"]) == 3
    assert set(body["data"][0]) == {
        "device_name",
        "device_id",
        "pressed_at",
        "cause",
        "source",
        "meta",
    }


async def test_threshold_fires_on_crossings_not_while_above(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Above 20: 18 -> 22 fires, 22 -> 25 does not, 19 -> 21 fires again; below 20 fires
    on the falls; readings before the first poll count (the timeline is backfilled)."""
    porch = await make_device(type="temperature_sensor", name="Porch")
    for value in (18, 22, 25):
        await set_state(core, alice, porch, temperature=value)
    above = {"device": porch.id, "direction": "above", "threshold": "20"}
    below = {"device": porch.id, "direction": "below", "threshold": "20.0"}
    _, body = await poll(client, alice, "temperature_crossed_threshold", {"triggerFields": above})
    assert [(i["previous_temperature"], i["temperature"]) for i in body["data"]] == [("18", "22")]
    for value in (19, 21, 23, 20, 19.5):
        await set_state(core, alice, porch, temperature=value)
    _, body = await poll(client, alice, "temperature_crossed_threshold", {"triggerFields": above})
    assert [(i["previous_temperature"], i["temperature"]) for i in body["data"]] == [
        ("19", "21"),
        ("18", "22"),
    ]
    assert body["data"][0]["threshold"] == "20"
    assert body["data"][0]["direction"] == "above"
    _, body = await poll(client, alice, "temperature_crossed_threshold", {"triggerFields": below})
    assert [(i["previous_temperature"], i["temperature"]) for i in body["data"]] == [
        ("20", "19.5"),
        ("25", "19"),
        ("20", "18"),  # from the default 20: at the threshold, then below it
    ]
    ids = [i["meta"]["id"] for i in body["data"]]
    _, again = await poll(client, alice, "temperature_crossed_threshold", {"triggerFields": below})
    assert [i["meta"]["id"] for i in again["data"]] == ids


async def test_history_of_a_deleted_device_stays_on_its_timeline(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Deleting a device does not rewrite IFTTT's timeline; an unknown id reads empty."""
    lamp = await make_device()
    await set_state(core, alice, lamp, power="ON")
    await core.devices.delete(alice.principal, lamp.id, source="api")
    _, body = await poll(client, alice, "power_changed", {"triggerFields": {"device": lamp.id}})
    assert len(body["data"]) == 1
    _, body = await poll(client, alice, "power_changed", {"triggerFields": {"device": "dev_x"}})
    assert body == {"data": []}


async def test_unknown_trigger_and_field_are_404(client: Client, alice: Linked) -> None:
    """Slugs and fields that do not exist are 404 with errors."""
    for path in (
        f"{V1}/triggers/nope",
        f"{V1}/triggers/nope/fields/device/options",
        f"{V1}/triggers/power_changed/fields/nope/options",
        f"{V1}/triggers/power_changed/fields/threshold/validate",
        f"{V1}/actions/nope",
        f"{V1}/actions/set_power/fields/nope/options",
        f"{V1}/actions/set_brightness/fields/brightness/options",
    ):
        response = await client.post(path, json={}, headers=alice.headers)
        assert response.status == 404, path
        assert "errors" in await response.json()


async def test_options_list_fitting_devices_by_name(
    client: Client,
    alice: Linked,
    mallory: Linked,
    make_device: DeviceFactory,
    core: Core,
    conforms: SchemaCheck,
) -> None:
    """Device dropdowns hold the user's devices of fitting types, sorted by name; other
    households' devices never appear; fixed fields list their words."""
    lamp = await make_device(name="b lamp")
    dimmer = await make_device(type="dimmer", name="A dimmer")
    porch = await make_device(type="temperature_sensor", name="Porch")
    door = await make_device(type="contact_sensor", name="Door")
    bell = await make_device(type="button", name="Bell")
    await core.devices.create(mallory.principal, type="switch", name="Theirs", source="api")

    async def options(path: str) -> list[dict[str, str]]:
        response = await client.post(f"{V1}/{path}", headers=alice.headers)
        body = await response.json()
        conforms("StepFieldOptionsResponse", body)
        return list(body["data"])

    def values(found: list[dict[str, str]]) -> list[str]:
        return [option["value"] for option in found]

    assert values(await options("triggers/power_changed/fields/device/options")) == [
        dimmer.id,
        lamp.id,
    ]
    assert values(await options("triggers/brightness_changed/fields/device/options")) == [dimmer.id]
    assert values(await options("triggers/sensor_value_changed/fields/device/options")) == [
        door.id,
        porch.id,
    ]
    assert values(
        await options("triggers/temperature_crossed_threshold/fields/device/options")
    ) == [porch.id]
    assert values(await options("triggers/button_pressed/fields/device/options")) == [bell.id]
    assert values(await options("actions/press_button/fields/device/options")) == [bell.id]
    assert values(await options("actions/set_power/fields/power/options")) == [
        "on",
        "off",
        "toggle",
    ]
    assert values(
        await options("triggers/temperature_crossed_threshold/fields/direction/options")
    ) == ["above", "below"]


async def test_field_and_contextual_validation(
    client: Client, alice: Linked, make_device: DeviceFactory, conforms: SchemaCheck
) -> None:
    """Per-field validation always answers 200 with valid/message; contextual validation
    answers every field, on both the documented and the OpenAPI path."""
    porch = await make_device(type="temperature_sensor", name="Porch")
    lamp = await make_device()
    base = f"{V1}/triggers/temperature_crossed_threshold"
    for field, value, valid in (
        ("threshold", "21.5", True),
        ("threshold", "-3", True),
        ("threshold", "hot", False),
        ("threshold", None, False),
        ("direction", "BELOW", True),
        ("direction", "up", False),
        ("device", porch.id, True),
        ("device", lamp.id, False),
        ("device", "dev_nope", False),
    ):
        response = await client.post(
            f"{base}/fields/{field}/validate", json={"value": value}, headers=alice.headers
        )
        assert response.status == 200
        body = await response.json()
        conforms("ValidateFieldResponse", body)
        assert body["data"]["valid"] is valid, (field, value)
        if not valid:
            assert body["data"]["message"]
    for path in (f"{base}/validate", f"{base}/fields/validate"):
        response = await client.post(
            path,
            json={"values": {"device": porch.id, "direction": "above", "threshold": "x"}},
            headers=alice.headers,
        )
        body = await response.json()
        conforms("ValidateFieldsResponse", body)
        assert body["data"]["device"] == {"valid": True}
        assert body["data"]["direction"] == {"valid": True}
        assert body["data"]["threshold"]["valid"] is False


async def test_identity_is_written_when_new_or_changed_not_on_every_poll(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, clock: MovableClock
) -> None:
    """Polls stay reads: an unchanged identity is rewritten only after ten minutes; new
    fields for the same identity are stored at once."""
    lamp = await make_device()
    hall = await make_device(name="Hall")
    clock.freeze(clock())
    body = {"triggerFields": {"device": lamp.id}, "trigger_identity": "ti-w"}
    await poll(client, alice, "power_changed", body)
    [first] = await core.ifttt.identities(alice.principal)
    clock.advance(60)
    await poll(client, alice, "power_changed", body)
    [same] = await core.ifttt.identities(alice.principal)
    assert same.last_polled_at == first.last_polled_at
    clock.advance(600)
    await poll(client, alice, "power_changed", body)
    [touched] = await core.ifttt.identities(alice.principal)
    assert touched.last_polled_at == first.last_polled_at + 660
    moved = {"triggerFields": {"device": hall.id}, "trigger_identity": "ti-w"}
    await poll(client, alice, "power_changed", moved)
    [changed] = await core.ifttt.identities(alice.principal)
    assert changed.device_id == hall.id


async def test_events_are_kept_30_days_whatever_the_activity_retention(
    core: Core, alice: Linked, make_device: DeviceFactory, clock: MovableClock
) -> None:
    """Pruning drops events older than ``ifttt.event_retention_days`` (except the newest 50
    of a timeline, which IFTTT expects to stay) and identities nobody polled for as long;
    pruning the activity log never touches the timelines."""
    lamp = await make_device()
    fields = {"triggerFields": {"device": lamp.id}, "trigger_identity": "ti-p"}
    clock.freeze(clock())
    for n in range(52):  # day 0: 52 changes, then one more on day 29
        await set_state(core, alice, lamp, power="ON" if n % 2 == 0 else "OFF")
    clock.advance(29 * DAY)
    await set_state(core, alice, lamp, power="ON")
    await core.ifttt.poll(alice.principal, "power_changed", fields)
    assert await core.store.prune_activity(older_than=clock() + 1) > 0  # all activity gone
    clock.advance(2 * DAY)  # day 31
    assert (
        len(await core.ifttt.poll(alice.principal, "power_changed", {**fields, "limit": 60})) == 53
    )
    pruned = await core.ifttt.prune()
    assert (pruned.events, pruned.identities) == (3, 0)  # past retention and not in the newest 50
    items = await core.ifttt.poll(alice.principal, "power_changed", {**fields, "limit": 60})
    assert len(items) == 50
    assert items[0]["power"] == "on"  # the day-29 change, newest first
    clock.advance(365 * DAY)
    pruned = await core.ifttt.prune()
    # A year later the timeline still holds what IFTTT saw last; the identity nobody polls goes.
    assert (pruned.events, pruned.identities) == (0, 1)
    assert (
        len(await core.ifttt.poll(alice.principal, "power_changed", {**fields, "limit": 60})) == 50
    )


def test_a_poll_reads_one_index_range_without_sorting(settings: Settings) -> None:
    """The poll query is a SEARCH on the timeline index with no temporary B-tree: its cost
    depends on ``limit``, not on how many events are stored."""
    from staterelay.store.sqlite.engine import apply_migrations, connect

    path = Path(settings.data_dir) / "plan.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, synchronous="NORMAL")
    try:
        apply_migrations(conn)
        plan = " | ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id, uid FROM ifttt_events WHERE tenant_id = ?"
                " AND device_id = ? AND kind = ? AND variant = ? ORDER BY id DESC LIMIT ?",
                ("t", "d", "power", "", 50),
            )
        )
    finally:
        conn.close()
    assert "SEARCH ifttt_events USING INDEX ifttt_events_timeline" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    assert isinstance(sqlite3.sqlite_version, str)
