"""Webhook routes: CRUD with a secret shown once, test sends, deliveries and the SSRF policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import Settings, WebhookSettings
from tests.api.conftest import (
    API,
    Client,
    assert_problem,
    assert_schema,
    create_device,
    create_webhook,
)
from tests.conftest import Account, make_account


@pytest.fixture
async def receiver_url(aiohttp_server: Any) -> str:
    """A URL on loopback that accepts webhook deliveries."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", accept)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("/hook"))


async def test_webhook_crud_shows_the_secret_once(
    client: Client, account: Account, receiver_url: str
) -> None:
    """Create returns the secret and a Location; reads and lists never show it again."""
    device = await create_device(client, account)
    created = await client.post(
        f"{API}/webhooks",
        json={
            "url": receiver_url,
            "description": "Node-RED",
            "device_ids": [device["id"]],
            "event_types": ["state.changed", "button.pressed"],
        },
        headers=account.headers,
    )
    assert created.status == 201
    webhook = await created.json()
    assert_schema("WebhookCreated", webhook)
    secret = webhook.pop("secret")
    assert secret.startswith("whsec_")
    assert created.headers["Location"] == f"{API}/webhooks/{webhook['id']}"
    assert webhook["url"] == receiver_url
    assert webhook["device_ids"] == [device["id"]]
    assert webhook["event_types"] == ["state.changed", "button.pressed"]
    assert webhook["enabled"] is True
    assert webhook["disabled_reason"] is None

    fetched = await client.get(created.headers["Location"], headers=account.headers)
    assert_schema("Webhook", await fetched.json())
    assert await fetched.json() == webhook
    assert secret not in await fetched.text()
    listed = await client.get(f"{API}/webhooks", headers=account.headers)
    assert_schema("WebhookList", await listed.json())
    assert (await listed.json())["items"] == [webhook]
    assert secret not in await listed.text()

    patched = await client.patch(
        f"{API}/webhooks/{webhook['id']}",
        json={"enabled": False, "event_types": None, "device_ids": None, "description": None},
        headers=account.headers,
    )
    assert patched.status == 200
    changed = await patched.json()
    assert changed["enabled"] is False
    assert changed["event_types"] is None
    assert changed["device_ids"] is None
    assert changed["description"] == ""
    assert "secret" not in changed

    deleted = await client.delete(f"{API}/webhooks/{webhook['id']}", headers=account.headers)
    assert deleted.status == 204
    gone = await client.get(f"{API}/webhooks/{webhook['id']}", headers=account.headers)
    await assert_problem(gone, 404, "not_found")


async def test_test_send_is_queued(client: Client, account: Account, receiver_url: str) -> None:
    """A test send answers 202 at once; a disabled webhook refuses it with 422."""
    webhook = await create_webhook(client, account, receiver_url)
    url = f"{API}/webhooks/{webhook['id']}"
    queued = await client.post(f"{url}/test", headers=account.headers)
    assert queued.status == 202
    body = await queued.json()
    assert_schema("WebhookTestQueued", body)
    assert body == {"webhook_id": webhook["id"], "event_type": "webhook.test", "status": "queued"}

    deliveries = await client.get(f"{url}/deliveries", headers=account.headers)
    assert deliveries.status == 200
    assert_schema("WebhookDeliveryList", await deliveries.json())

    await client.patch(url, json={"enabled": False}, headers=account.headers)
    refused = await client.post(f"{url}/test", headers=account.headers)
    await assert_problem(refused, 422, "invalid_value", field="enabled")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "invalid_value", "url"),
        ({"url": 42}, "invalid_value", "url"),
        ({"url": "ftp://127.0.0.1/"}, "invalid_value", "url"),
        ({"url": "http://user:pw@127.0.0.1/"}, "invalid_value", "url"),
        ({"url": "http://127.0.0.1/", "device_ids": "dev_1"}, "invalid_value", "device_ids"),
        ({"url": "http://127.0.0.1/", "device_ids": [1, 2]}, "invalid_value", "device_ids"),
        ({"url": "http://127.0.0.1/", "event_types": ["x"]}, "invalid_value", "event_types"),
        ({"url": "http://127.0.0.1/", "event_types": []}, "invalid_value", "event_types"),
        ({"url": "http://127.0.0.1/", "enabled": "yes"}, "invalid_value", "enabled"),
        ({"url": "http://127.0.0.1/", "headers": {}}, "unknown_field", "headers"),
    ],
)
async def test_webhook_create_validates(
    client: Client, account: Account, body: dict[str, Any], code: str, field: str
) -> None:
    """Missing, mistyped and unknown members are 422 naming the field; nothing is created."""
    response = await client.post(f"{API}/webhooks", json=body, headers=account.headers)
    await assert_problem(response, 422, code, field=field)
    listed = await client.get(f"{API}/webhooks", headers=account.headers)
    assert (await listed.json())["items"] == []


@pytest.fixture
async def strict_client(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> tuple[Client, Account]:
    """A second app with the default webhook settings: private networks are refused."""
    strict = dataclasses.replace(settings, webhooks=WebhookSettings())
    assert strict.webhooks.allow_private_networks is False
    app = create_app(strict)
    client: Client = await aiohttp_client(app)
    account = await make_account(app[CORE_KEY], "strict@example.com")
    return client, account


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://192.168.1.20:8123/api/webhook/x",
        "http://127.0.0.1:9/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        # IPv6 outside global unicast that ``ipaddress`` still calls global (issue 15).
        "http://[::ffff:0:7f00:1]/",
        "http://[::1:7f00:1]/",
        "http://[fec0::1]/",
        "http://localhost/",
        "http://169.254.169.254/latest/meta-data",
    ],
)
async def test_private_addresses_are_refused_by_default(
    strict_client: tuple[Client, Account], url: str
) -> None:
    """Without ``allow_private_networks`` a webhook to a private or local address is 422."""
    client, account = strict_client
    response = await client.post(f"{API}/webhooks", json={"url": url}, headers=account.headers)
    await assert_problem(response, 422, "invalid_value", field="url")
    listed = await client.get(f"{API}/webhooks", headers=account.headers)
    assert (await listed.json())["items"] == []
