"""Random bodies, values, types and headers at the write routes: never a 500, never a change.

Hypothesis drives synchronous tests; the app runs on an event loop of its own (an
``asyncio.Runner`` made here), so each example is one real HTTP round trip on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import LimitsSettings, Settings
from tests.api.conftest import API
from tests.conftest import Account, make_account

ALLOWED = {200, 201, 400, 404, 409, 412, 413, 415, 422}
EXAMPLES = 100
DEVICE_TYPES = ("switch", "dimmer", "temperature_sensor", "button", "contact_sensor")

FIELD_NAMES = ["type", "name", "description", "options", "routine_trigger", "scale", "value"]
PROPERTY_NAMES = ["power", "brightness", "detection", "temperature", "last_pressed_at"]
# Strings that reach interesting branches: known words, blanks, control characters, lone
# surrogates (valid JSON escapes, but not encodable Unicode) and over-long text.
TEXTS = ["switch", "ON", "DETECTED", "CELSIUS", "", " ", "\x00", "\ud800", "a\udfff", "x" * 200]
# Numbers at and past the edges of a double and of a 64-bit integer.
NUMBERS = [2**53, 2**63, 10**309, -(10**400), 1e308, 5e-324, -0.0]
# Values each property accepts, so that random updates also succeed and change state.
VALID_VALUES: dict[str, list[Any]] = {
    "power": ["ON", "off", True, False],
    "brightness": [0, 55, 100, 42.0],
    "detection": ["detected", "NOT_DETECTED", True],
    "temperature": [21.5, -3, {"value": 70, "scale": "FAHRENHEIT"}],
    "last_pressed_at": ["2026-01-01T00:00:00.000Z"],
}


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """Pick among strategies with integer weights."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


texts = st.text(max_size=12) | st.sampled_from(TEXTS)
keys = st.sampled_from(FIELD_NAMES + PROPERTY_NAMES) | st.text(max_size=8)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(NUMBERS) | texts
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
)
property_values = weighted(
    (json_values, 1),
    (st.sampled_from(NUMBERS), 1),
    (
        st.fixed_dictionaries(
            {"value": st.sampled_from(NUMBERS) | json_values},
            optional={"scale": st.sampled_from(["CELSIUS", "KELVIN"]) | json_values},
        ),
        1,
    ),
)
names = st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=20) | (
    st.sampled_from(["Lamp\ud800", "\udfff"])
)

# Bodies any route might get: not JSON, not an object, or too large.
odd_bodies = weighted(
    (json_values.map(_encode), 2),
    (st.binary(max_size=40), 1),
    (st.just(b'{"name": "' + b"x" * 70 * 1024 + b'"}'), 1),
)
create_bodies = weighted(
    (
        st.fixed_dictionaries(
            {"type": st.sampled_from(DEVICE_TYPES), "name": names},
            optional={"description": st.none() | names, "options": st.none() | st.just({})},
        ).map(_encode),
        2,
    ),
    (
        st.fixed_dictionaries(
            {"type": st.sampled_from(DEVICE_TYPES) | json_values, "name": texts | json_values},
            optional={
                "description": texts | json_values,
                "options": st.dictionaries(keys, json_values, max_size=2) | json_values,
                "extra": json_values,
            },
        ).map(_encode),
        3,
    ),
    (odd_bodies, 1),
)
patch_bodies = weighted(
    (
        st.fixed_dictionaries(
            {},
            optional={
                "name": names | texts | json_values,
                "description": texts | json_values,
                "options": st.dictionaries(keys, json_values, max_size=2) | json_values,
            },
        ).map(_encode),
        4,
    ),
    (st.dictionaries(keys, json_values, max_size=3).map(_encode), 1),
    (odd_bodies, 1),
)
content_types = st.sampled_from(
    ["application/json"] * 16 + ["application/json; charset=utf-8", "text/plain", ""]
)
if_matches = st.sampled_from([None] * 12 + ['"1"', "2", 'W/"3"', "*", "nope", '"1", "2"'])


def state_bodies(own: list[str]) -> st.SearchStrategy[bytes]:
    """Updates for a device with properties ``own``: valid, random or not an update at all."""
    valid = st.sampled_from(own).flatmap(
        lambda name: st.fixed_dictionaries({name: st.sampled_from(VALID_VALUES[name])})
    )
    random = st.dictionaries(st.sampled_from(own) | keys, property_values, max_size=3)
    return weighted((valid.map(_encode), 2), (random.map(_encode), 4), (odd_bodies, 1))


@dataclass
class Harness:
    """The app on loopback, an account and the devices the random requests aim at."""

    client: TestClient[web.Request, web.Application]
    account: Account
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)

    @classmethod
    async def start(cls, settings: Settings) -> Harness:
        """Serve a fresh app and create one device of each type."""
        # Hundreds of requests a minute with one key: rate limits are not this test's subject.
        unlimited = LimitsSettings(api_key_per_minute=0, ip_per_minute=0)
        app = create_app(dataclasses.replace(settings, limits=unlimited))
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        account = await make_account(app[CORE_KEY], "fuzz@example.com")
        harness = cls(client=client, account=account)
        for kind in DEVICE_TYPES:
            response = await client.post(
                f"{API}/devices", json={"type": kind, "name": kind}, headers=account.headers
            )
            device = await response.json()
            harness.devices[kind] = device
        return harness

    async def close(self) -> None:
        """Stop the server."""
        await self.client.close()

    async def send(self, data: st.DataObject, method: str, url: str, body: bytes) -> None:
        """Send one request with random headers; check the answer and every device."""
        headers = {**self.account.headers, "Content-Type": data.draw(content_types)}
        if_match = data.draw(if_matches, label="If-Match")
        if if_match is not None:
            headers["If-Match"] = if_match
        response = await self.client.request(method, url, data=body, headers=headers)
        text = await response.text()
        self.statuses[response.status] += 1
        assert response.status in ALLOWED, (method, url, body[:300], response.status, text)
        if response.status >= 400:
            assert response.content_type == "application/problem+json", text
            assert json.loads(text)["status"] == response.status
            assert "Traceback" not in text
        for kind, before in self.devices.items():
            current = await self.client.get(
                f"{API}/devices/{before['id']}", headers=self.account.headers
            )
            after = await current.json()
            if response.status == 200 and url.startswith(f"{API}/devices/{before['id']}"):
                self.devices[kind] = after
            else:
                assert after == before, (method, url, body[:300], response.status)


def _fuzz(
    settings: Settings, step: Callable[[Harness, st.DataObject], Awaitable[None]]
) -> Counter[int]:
    """Run ``step`` for each Hypothesis example against one running app; return the statuses."""
    with asyncio.Runner() as runner:
        harness = runner.run(Harness.start(settings))
        try:

            @hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(data=st.data())
            def example(data: st.DataObject) -> None:
                runner.run(step(harness, data))

            example()
        finally:
            runner.run(harness.close())
    assert sum(harness.statuses.values()) >= 50
    return harness.statuses


def test_random_create_bodies(settings: Settings) -> None:
    """POST /devices with random members, types and bodies: only expected statuses."""

    async def step(harness: Harness, data: st.DataObject) -> None:
        body = data.draw(create_bodies, label="body")
        await harness.send(data, "POST", f"{API}/devices", body)

    statuses = _fuzz(settings, step)
    assert statuses[201]
    assert statuses[422]
    assert statuses[400]


@pytest.mark.parametrize("kind", DEVICE_TYPES)
def test_random_state_values(settings: Settings, kind: str) -> None:
    """PUT state with random property values: only expected statuses; rejections change nothing."""

    async def step(harness: Harness, data: st.DataObject) -> None:
        device = harness.devices[kind]
        device_id = data.draw(st.sampled_from([device["id"]] * 9 + ["dev_missing"]))
        body = data.draw(state_bodies(list(device["state"])), label="body")
        await harness.send(data, "PUT", f"{API}/devices/{device_id}/state", body)

    statuses = _fuzz(settings, step)
    assert statuses[422]
    assert statuses[400]
    if kind != "button":
        assert statuses[200]


def test_random_patch_fields(settings: Settings) -> None:
    """PATCH with random fields and types: only expected statuses; rejections change nothing."""

    async def step(harness: Harness, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(DEVICE_TYPES))
        device_id = data.draw(st.sampled_from([harness.devices[kind]["id"]] * 9 + ["dev_none"]))
        body = data.draw(patch_bodies, label="body")
        await harness.send(data, "PATCH", f"{API}/devices/{device_id}", body)

    statuses = _fuzz(settings, step)
    assert statuses[200]
    assert statuses[422]
    assert statuses[400]
