"""``staterelay export`` and ``import``: devices move between instances with ids and state."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from staterelay.cli import cli
from staterelay.core import Core
from tests.conftest import make_account
from tests.instances import with_core


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own STATERELAY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("STATERELAY_"):
            monkeypatch.delenv(name)


def invoke(*args: str, stdin: str | None = None) -> Result:
    """The command line in-process, stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), input=stdin)


def export(data_dir: Path, *extra: str) -> dict[str, Any]:
    """The export document of an instance, from stdout."""
    result = invoke("export", "--data-dir", str(data_dir), *extra)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


async def household_with_every_type(data_dir: Path) -> None:
    """One device of each type, each away from its default state."""

    async def work(core: Core) -> None:
        account = await make_account(core, "owner@example.com")
        principal = await core.auth.authenticate(account.key)
        devices = core.devices

        async def make(type_: str, name: str, state: dict[str, Any] | None, **extra: Any) -> None:
            device = await devices.create(principal, type=type_, name=name, source="api", **extra)
            if state:
                await devices.set_state(principal, device.id, state, source="api")

        await make("switch", "Movie mode", {"power": "ON"}, options={"routine_trigger": True})
        await make(
            "dimmer",
            "Desk lamp",
            {"power": "ON", "brightness": 35},
            description="Desk",
            room="Study",
        )
        await make("contact_sensor", "Front door", {"detection": "DETECTED"})
        await make("motion_sensor", "Hall", None)
        await make(
            "temperature_sensor", "Cellar", {"temperature": 50.5}, options={"scale": "FAHRENHEIT"}
        )
        await make("button", "Doorbell", None)
        bell = (await devices.list(principal)).items[-1]
        await devices.press(principal, bell.id, source="api")

    await with_core(data_dir, work)


def test_export_writes_every_device_with_its_state(tmp_path: Path) -> None:
    """Version 1, devices in creation order with id, type, name, description, room, options,
    state."""
    source = tmp_path / "source"
    asyncio.run(household_with_every_type(source))
    document = export(source)
    assert document["version"] == 1
    assert [d["name"] for d in document["devices"]] == [
        "Movie mode",
        "Desk lamp",
        "Front door",
        "Hall",
        "Cellar",
        "Doorbell",
    ]
    lamp = document["devices"][1]
    assert set(lamp) == {"id", "type", "name", "description", "room", "options", "state"}
    assert lamp["state"] == {"power": "ON", "brightness": 35}
    assert (lamp["room"], document["devices"][0]["room"]) == ("Study", "")
    assert lamp["description"] == "Desk"
    assert document["devices"][0]["options"] == {"routine_trigger": True}
    assert document["devices"][4]["state"]["temperature"] == {"value": 50.5, "scale": "FAHRENHEIT"}
    assert document["devices"][5]["state"]["last_pressed_at"] is not None

    out = tmp_path / "devices.json"
    result = invoke("export", str(out), "--data-dir", str(source))
    assert result.exit_code == 0, result.output
    assert "wrote 6 devices" in result.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == document


def test_export_of_an_empty_instance_creates_nothing(tmp_path: Path) -> None:
    """No household yet: an empty list, and no tenant made just to export it."""
    data = tmp_path / "data"
    assert export(data) == {"version": 1, "devices": []}


def test_round_trip_keeps_ids_and_state_and_a_second_import_changes_nothing(
    tmp_path: Path,
) -> None:
    """Export from one instance, import into a new one: the same devices, ids and state."""
    source, target = tmp_path / "source", tmp_path / "target"
    asyncio.run(household_with_every_type(source))
    document = export(source)
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    result = invoke("import", str(path), "--data-dir", str(target))
    assert result.exit_code == 0, result.output
    assert "6 created, 0 skipped, 0 failed" in result.stderr
    imported = export(target)
    for before, after in zip(document["devices"], imported["devices"], strict=True):
        assert after["id"] == before["id"]
        if before["type"] == "button":  # a press is an event, not state to copy
            assert after == {**before, "state": {"last_pressed_at": None}}
        else:
            assert after == before

    again = invoke("import", str(path), "--data-dir", str(target))
    assert again.exit_code == 0, again.output
    assert "0 created, 6 skipped, 0 failed" in again.stderr
    assert "skipped 'Desk lamp': a device of this name exists" in again.stderr
    assert export(target) == imported


def test_import_records_the_change_as_coming_from_the_cli(tmp_path: Path) -> None:
    """Import goes through core: activity rows say source cli, cause import."""
    source, target = tmp_path / "source", tmp_path / "target"
    asyncio.run(household_with_every_type(source))
    document = export(source)
    result = invoke("import", "-", "--data-dir", str(target), stdin=json.dumps(document))
    assert result.exit_code == 0, result.output
    lamp_id = document["devices"][1]["id"]

    async def activity(core: Core) -> list[tuple[str, str, str | None]]:
        tenant = await core.store.first_tenant()
        assert tenant is not None
        rows = await core.store.list_activity(tenant.id, device_id=lamp_id, limit=10)
        return [(row.kind, row.source, row.cause) for row in rows]

    rows = asyncio.run(with_core(target, activity))
    assert ("device.created", "cli", None) in rows
    assert ("state", "cli", "import") in rows


def test_taken_ids_need_new_ids(tmp_path: Path) -> None:
    """An id another device has is refused with the way out; --new-ids imports it."""
    source = tmp_path / "source"
    asyncio.run(household_with_every_type(source))
    document = export(source)
    renamed = {
        "version": 1,
        "devices": [{**d, "name": d["name"] + " copy"} for d in document["devices"][:2]],
    }
    text = json.dumps(renamed)
    result = invoke("import", "-", "--data-dir", str(source), stdin=text)
    assert result.exit_code == 1
    first_id = document["devices"][0]["id"]
    assert (
        f"failed 'Movie mode copy': id {first_id} is taken on this instance; use --new-ids"
        in result.stderr
    )
    result = invoke("import", "-", "--data-dir", str(source), "--new-ids", stdin=text)
    assert result.exit_code == 0, result.output
    copies = [d for d in export(source)["devices"] if d["name"].endswith(" copy")]
    assert [d["name"] for d in copies] == ["Movie mode copy", "Desk lamp copy"]
    assert {d["id"] for d in copies}.isdisjoint(d["id"] for d in document["devices"])
    assert copies[1]["state"] == {"power": "ON", "brightness": 35}


def test_email_picks_the_tenant(tmp_path: Path) -> None:
    """--email exports and imports the devices of that user's household only."""
    data = tmp_path / "data"
    asyncio.run(household_with_every_type(data))

    async def other_tenant(core: Core) -> None:
        await make_account(core, "neighbour@example.net", new_tenant=True)

    asyncio.run(with_core(data, other_tenant))
    assert export(data, "--email", "neighbour@example.net")["devices"] == []
    one = {"version": 1, "devices": [{"type": "switch", "name": "Garage"}]}
    result = invoke(
        "import",
        "-",
        "--data-dir",
        str(data),
        "--email",
        "neighbour@example.net",
        stdin=json.dumps(one),
    )
    assert result.exit_code == 0, result.output
    assert [d["name"] for d in export(data, "--email", "neighbour@example.net")["devices"]] == [
        "Garage"
    ]
    assert "Garage" not in [d["name"] for d in export(data)["devices"]]
    unknown = invoke("export", "--data-dir", str(data), "--email", "nobody@example.org")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == "staterelay: no user with this email"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"type": "toaster", "name": "Toast"}, "type must be one of"),
        ({"type": "dimmer", "name": "Too bright", "state": {"brightness": 300}}, "0 to 100"),
        ({"type": "switch", "name": "Odd", "state": {"colour": "red"}}, "unknown property"),
        ({"type": "switch", "name": "Bad id", "id": "has spaces"}, "id must be"),
        ({"type": "switch", "name": "   "}, "name must be"),
    ],
)
def test_bad_devices_fail_alone_and_leave_nothing_behind(
    tmp_path: Path, entry: dict[str, Any], reason: str
) -> None:
    """One bad device is reported and not created; the good ones still are; exit code 1."""
    data = tmp_path / "data"
    document = {"version": 1, "devices": [entry, {"type": "switch", "name": "Good"}]}
    result = invoke("import", "-", "--data-dir", str(data), stdin=json.dumps(document))
    assert result.exit_code == 1
    assert reason in result.stderr
    assert "1 created, 0 skipped, 1 failed" in result.stderr
    assert [d["name"] for d in export(data)["devices"]] == ["Good"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "is not JSON"),
        ('{"devices": []}', "export version None is not supported"),
        ('{"version": 2, "devices": []}', "export version 2 is not supported"),
        ('{"version": 1, "devices": {}}', '"devices" must be a list of objects'),
        ("[]", "not a StateRelay device export"),
    ],
)
def test_documents_that_are_not_exports_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    """One line naming the problem; nothing is opened or created."""
    data = tmp_path / "data"
    result = invoke("import", "-", "--data-dir", str(data), stdin=text)
    assert result.exit_code == 1
    assert message in result.stderr
    assert not data.exists()


def test_an_export_without_rooms_imports(tmp_path: Path) -> None:
    """Documents written before rooms existed have no ``room``: the devices get none."""
    target = tmp_path / "target"
    path = tmp_path / "old.json"
    old = {"version": 1, "devices": [{"type": "switch", "name": "Fan", "options": {}}]}
    path.write_text(json.dumps(old), encoding="utf-8")
    result = invoke("import", str(path), "--data-dir", str(target))
    assert result.exit_code == 0, result.output
    (fan,) = export(target)["devices"]
    assert (fan["name"], fan["room"]) == ("Fan", "")
