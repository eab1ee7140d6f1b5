"""IFTTT without a private service: webhooks of format ``ifttt_webhooks`` (the Maker URL)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.core import Core
from tests.api.conftest import API, assert_schema
from tests.ifttt.conftest import Client, DeviceFactory, Linked, set_state, wait_until

KEY = "dK3y_from-IFTTT_webhooks"


@dataclass
class Maker:
    """IFTTT's Webhooks service on loopback: records every request."""

    server: TestServer | None = None
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The base URL a preset webhook is given instead of https://maker.ifttt.com."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def handle(self, request: web.Request) -> web.Response:
        """Record and answer as IFTTT does."""
        body = json.loads(await request.read() or b"null")
        self.requests.append((request.path, dict(request.headers), body))
        return web.Response(text="Congratulations! You've fired the event")


@pytest.fixture
async def maker(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Maker:
    """A running Maker recorder."""
    recorder = Maker()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    recorder.server = await aiohttp_server(app)
    return recorder


async def create(client: Client, who: Linked, **fields: Any) -> tuple[int, Any]:
    """POST /api/v1/webhooks; (status, JSON)."""
    response = await client.post(f"{API}/webhooks", json=fields, headers=who.api_headers)
    return response.status, await response.json(content_type=None)


async def test_create_without_url_targets_ifttt_and_never_shows_the_key(
    client: Client, alice: Linked
) -> None:
    """The preset needs only an event name and the key; the URL defaults to IFTTT's and
    the key is never returned (only encrypted at rest)."""
    status, body = await create(
        client, alice, format="ifttt_webhooks", ifttt_event="lamp_changed", ifttt_key=KEY
    )
    assert status == 201, body
    assert_schema("WebhookCreated", body)
    assert body["url"] == "https://maker.ifttt.com"
    assert (body["format"], body["ifttt_event"]) == ("ifttt_webhooks", "lamp_changed")
    listed = await client.get(f"{API}/webhooks", headers=alice.api_headers)
    fetched = await client.get(f"{API}/webhooks/{body['id']}", headers=alice.api_headers)
    for text in (json.dumps(body), await listed.text(), await fetched.text()):
        assert KEY not in text
    assert_schema("Webhook", await fetched.json())


async def test_standard_webhooks_are_unchanged(client: Client, alice: Linked) -> None:
    """A webhook created as before is ``standard`` and still needs its URL."""
    status, body = await create(client, alice, url="https://example.com/hook")
    assert status == 201
    assert (body["format"], body["ifttt_event"]) == ("standard", None)
    status, body = await create(client, alice)
    assert status == 422
    assert body["field"] == "url"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"format": "ifttt_webhooks", "ifttt_key": KEY}, "ifttt_event"),
        ({"format": "ifttt_webhooks", "ifttt_event": "x"}, "ifttt_key"),
        ({"format": "ifttt_webhooks", "ifttt_event": "has space", "ifttt_key": KEY}, "ifttt_event"),
        ({"format": "ifttt_webhooks", "ifttt_event": "x", "ifttt_key": "short"}, "ifttt_key"),
        ({"format": "maker", "url": "https://example.com"}, "format"),
        ({"url": "https://example.com", "ifttt_event": "x"}, "format"),
    ],
)
async def test_invalid_preset_fields_are_refused(
    client: Client, alice: Linked, fields: dict[str, Any], field: str
) -> None:
    """Missing or malformed event names and keys, and unknown formats, are 422."""
    status, body = await create(client, alice, **fields)
    assert status == 422, body
    assert body["field"] == field


async def test_patch_changes_the_event_and_key_and_back_to_standard(
    client: Client, alice: Linked
) -> None:
    """PATCH renames the event, replaces the key, or turns the webhook into a standard one
    (which forgets the IFTTT fields)."""
    _, body = await create(
        client, alice, format="ifttt_webhooks", ifttt_event="first", ifttt_key=KEY
    )
    path = f"{API}/webhooks/{body['id']}"
    renamed = await client.patch(path, json={"ifttt_event": "second"}, headers=alice.api_headers)
    assert (await renamed.json())["ifttt_event"] == "second"
    rekeyed = await client.patch(path, json={"ifttt_key": KEY + "2"}, headers=alice.api_headers)
    assert rekeyed.status == 200
    standard = await client.patch(
        path,
        json={"format": "standard", "url": "https://example.com/hook"},
        headers=alice.api_headers,
    )
    assert (await standard.json())["format"] == "standard"
    assert (await standard.json())["ifttt_event"] is None
    back = await client.patch(path, json={"format": "ifttt_webhooks"}, headers=alice.api_headers)
    assert back.status == 422  # the key was forgotten: it must be given again


async def test_changes_start_an_applet_with_value1_to_value3(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, maker: Maker
) -> None:
    """Each change POSTs ``{value1: device, value2: property, value3: new value}`` to
    ``/trigger/{event}/with/key/{key}``, unsigned; standard webhooks stay signed."""
    status, body = await create(
        client,
        alice,
        url=maker.url,
        format="ifttt_webhooks",
        ifttt_event="home_event",
        ifttt_key=KEY,
    )
    assert status == 201, body
    _, standard = await create(client, alice, url=f"{maker.url}/standard")
    lamp = await make_device()
    porch = await make_device(type="temperature_sensor", name="Porch")
    bell = await make_device(type="button", name="Bell")
    await set_state(core, alice, lamp, power="ON")
    await set_state(core, alice, porch, temperature=21.5)
    await core.devices.press(alice.principal, bell.id, source="api")
    path = f"/trigger/home_event/with/key/{KEY}"
    await wait_until(lambda: len([r for r in maker.requests if r[0] == path]) >= 6)
    await wait_until(lambda: len([r for r in maker.requests if r[0] == "/standard"]) >= 6)
    bodies = [request[2] for request in maker.requests if request[0] == path]
    assert {"value1": "Desk lamp", "value2": "power", "value3": "ON"} in bodies
    assert {"value1": "Porch", "value2": "temperature", "value3": "21.5"} in bodies
    assert any(b["value1"] == "Bell" and b["value2"] == "pressed" for b in bodies)
    assert {"value1": "Desk lamp", "value2": "device.created", "value3": ""} in bodies
    for request_path, headers, _ in maker.requests:
        signed = "webhook-signature" in {name.lower() for name in headers}
        assert signed == (request_path == "/standard")
        if request_path == path:
            assert headers["Content-Type"] == "application/json"
    test_send = await client.post(f"{API}/webhooks/{body['id']}/test", headers=alice.api_headers)
    assert test_send.status == 202
    await wait_until(
        lambda: any(r[2].get("value2") == "test" for r in maker.requests if r[0] == path)
    )
    history = await client.get(f"{API}/webhooks/{body['id']}/deliveries", headers=alice.api_headers)
    assert all(item["status_code"] == 200 for item in (await history.json())["items"])
    assert standard["format"] == "standard"
