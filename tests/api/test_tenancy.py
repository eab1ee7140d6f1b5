"""Tenancy: another household's ids are 404 on every route, and nothing of theirs changes."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from tests.api.conftest import (
    API,
    Client,
    api_routes,
    assert_problem,
    create_device,
    create_webhook,
    fill,
    placeholders,
)
from tests.conftest import Account, link_oauth_client

# A plausible body per write route, so each request would succeed for the owner.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", f"{API}/devices/{{device_id}}"): {"name": "pwned"},
    ("PUT", f"{API}/devices/{{device_id}}/state"): {"power": "ON"},
    ("PATCH", f"{API}/webhooks/{{webhook_id}}"): {"enabled": False},
}


async def _snapshot(client: Client, owner: Account, ids: dict[str, str]) -> dict[str, Any]:
    """Everything the owner can see of the objects the attacker aims at."""
    urls = [
        f"{API}/devices/{ids['device_id']}",
        f"{API}/devices/{ids['device_id']}/activity",
        f"{API}/webhooks/{ids['webhook_id']}",
        f"{API}/webhooks/{ids['webhook_id']}/deliveries",
        f"{API}/grants",
        f"{API}/keys",
    ]
    snapshot: dict[str, Any] = {}
    for url in urls:
        response = await client.get(url, headers=owner.headers)
        assert response.status == 200, url
        snapshot[url] = await response.json()
    for key in snapshot[f"{API}/keys"]["items"]:
        key.pop("last_used_at")  # flushed in the background; not the attacker's doing
    return snapshot


async def test_other_households_ids_are_404_everywhere(
    client: Client,
    app: web.Application,
    account: Account,
    other_account: Account,
    aiohttp_server: Any,
) -> None:
    """Every id-taking route answers 404 to a stranger, and the owner's data is unchanged."""
    receiver: TestServer = await aiohttp_server(web.Application())
    device = await create_device(client, account, type="button", name="Doorbell")
    webhook = await create_webhook(client, account, str(receiver.make_url("/hook")))
    keys = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    grant_id, _ = await link_oauth_client(app[CORE_KEY], account)
    ids = {
        "device_id": device["id"],
        "webhook_id": webhook["id"],
        "key_id": keys["items"][0]["id"],
        "grant_id": grant_id,
    }
    before = await _snapshot(client, account, ids)

    targeted = [(m, t) for m, t in api_routes(app) if placeholders(t)]
    assert len(targeted) >= 13
    for method, template in targeted:
        response = await client.request(
            method,
            fill(template, **ids),
            json=BODIES.get((method, template)),
            headers={**other_account.headers, "If-Match": '"1"'}
            if method in ("PUT", "PATCH", "DELETE")
            else other_account.headers,
        )
        problem = await assert_problem(response, 404, "not_found")
        assert device["id"] not in problem["detail"]

    assert await _snapshot(client, account, ids) == before
    still_works = await client.get(f"{API}/me", headers=account.headers)
    assert still_works.status == 200


async def test_lists_and_filters_show_only_own_household(
    client: Client, account: Account, other_account: Account
) -> None:
    """A stranger's lists are empty and filtering by the owner's device finds nothing."""
    device = await create_device(client, account)
    await client.put(
        f"{API}/devices/{device['id']}/state", json={"power": "ON"}, headers=account.headers
    )
    for url in (f"{API}/devices", f"{API}/activity", f"{API}/webhooks"):
        response = await client.get(url, headers=other_account.headers)
        assert (await response.json())["items"] == [], url
    filtered = await client.get(
        f"{API}/activity", params={"device_id": device["id"]}, headers=other_account.headers
    )
    assert (await filtered.json())["items"] == []
    keys = await (await client.get(f"{API}/keys", headers=other_account.headers)).json()
    assert len(keys["items"]) == 1
    me = await (await client.get(f"{API}/me", headers=other_account.headers)).json()
    assert me["tenant_id"] == other_account.tenant_id != account.tenant_id


async def test_webhook_cannot_name_another_households_device(
    client: Client, account: Account, other_account: Account
) -> None:
    """A webhook filter naming a stranger's device is refused like a missing one."""
    device = await create_device(client, account)
    response = await client.post(
        f"{API}/webhooks",
        json={"url": "http://127.0.0.1:9/", "device_ids": [device["id"]]},
        headers=other_account.headers,
    )
    await assert_problem(response, 422, "invalid_value", field="device_ids")
