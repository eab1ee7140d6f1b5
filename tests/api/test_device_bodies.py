"""A device's JSON is made once per device record, and never outlives what it describes."""

from __future__ import annotations

import dataclasses
import json

from staterelay.api import serializers
from staterelay.api.serializers import DEVICE_BODIES_MAX, device_body, device_json
from staterelay.core.records import PropertyState
from tests.store.test_contract import NOW, switch


def test_the_body_is_the_devices_json_made_once_per_record() -> None:
    lamp = switch("ten_a", "dev_a", "Lamp")
    first = device_body(lamp)
    assert json.loads(first) == device_json(lamp)
    assert device_body(lamp) is first  # the same record: the same bytes, not made again


def test_a_changed_device_gets_its_own_body() -> None:
    lamp = switch("ten_a", "dev_a", "Lamp")
    before = json.loads(device_body(lamp))
    on = dataclasses.replace(
        lamp, version=lamp.version + 1, properties={"power": PropertyState("ON", NOW + 1)}
    )
    after = json.loads(device_body(on))
    assert before["state"] == {"power": "OFF"}
    assert (after["state"], after["version"]) == ({"power": "ON"}, lamp.version + 1)
    # An equal record made afresh (another read) is answered right, whether remembered or not.
    again = dataclasses.replace(on)
    assert json.loads(device_body(again)) == after


def test_memory_is_bounded() -> None:
    records = [switch("ten_a", f"dev_{n}", f"Lamp {n}") for n in range(DEVICE_BODIES_MAX + 5)]
    for record in records:
        assert json.loads(device_body(record))["id"] == record.id
    assert len(serializers._DEVICE_BODIES) <= DEVICE_BODIES_MAX
