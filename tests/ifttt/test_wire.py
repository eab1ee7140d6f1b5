"""The wire: odd bodies never make a 500 or a trace; large answers are compressed."""

from __future__ import annotations

import pytest

from staterelay.core import Core
from tests.ifttt.conftest import V1, Client, DeviceFactory, Linked, set_state

ODD_BODIES = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b'"text"',
    b"[" * 20000 + b"]" * 20000,
    b'{"triggerFields": {"device": "\\ud800"}}',
    b'{"triggerFields": {"device": "dev_x", "threshold": 1e999}, "limit": 1e999}',
    b'{"triggerFields": [], "actionFields": [], "limit": {}}',
    b'{"actionFields": {"device": null, "power": ["on"], "brightness": {"a": 1}}}',
    b'{"trigger_identity": "\\u0000", "triggerFields": {"device": "x"}}',
    b'{"values": "x", "value": {"nested": [1, 2, 3]}}',
    b"\xff\xfe\x00",
]
PATHS = [
    "triggers/power_changed",
    "triggers/temperature_crossed_threshold",
    "triggers/temperature_crossed_threshold/fields/threshold/validate",
    "triggers/temperature_crossed_threshold/validate",
    "triggers/power_changed/fields/device/options",
    "actions/set_power",
    "actions/set_brightness",
    "actions/set_sensor_value",
    "actions/press_button",
    "actions/set_power/fields/power/options",
]


@pytest.mark.parametrize("path", PATHS)
async def test_odd_bodies_are_answered_in_ifttts_format(
    client: Client, alice: Linked, path: str
) -> None:
    """Whatever the body, the answer is 200, 400 or 404 with ``data`` or ``errors``."""
    for body in ODD_BODIES:
        response = await client.post(f"{V1}/{path}", data=body, headers=alice.headers)
        text = await response.text()
        assert response.status in (200, 400, 404), (path, body[:40], response.status, text)
        assert "Traceback" not in text
        document = await response.json()
        assert ("data" in document) == (response.status == 200), (path, body[:40])


async def test_a_body_over_the_limit_is_413_in_ifttts_format(client: Client, alice: Linked) -> None:
    """The server's body limit applies here too, answered as ``errors``."""
    response = await client.post(
        f"{V1}/triggers/power_changed", data=b" " * 70000, headers=alice.headers
    )
    assert response.status == 413
    assert "errors" in await response.json()


async def test_a_full_timeline_is_sent_compressed_when_asked(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Answers over a kilobyte are gzip-compressed for clients that accept it."""
    lamp = await make_device()
    for n in range(20):
        await set_state(core, alice, lamp, power="ON" if n % 2 == 0 else "OFF")
    response = await client.post(
        f"{V1}/triggers/power_changed",
        json={"triggerFields": {"device": lamp.id}},
        headers={**alice.headers, "Accept-Encoding": "gzip"},
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert len((await response.json())["data"]) == 20
    plain = await client.post(
        f"{V1}/triggers/power_changed",
        json={"triggerFields": {"device": lamp.id}, "limit": 1},
        headers={**alice.headers, "Accept-Encoding": "gzip"},
    )
    assert "Content-Encoding" not in plain.headers
