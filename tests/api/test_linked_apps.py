"""A linked app's token may use devices but never manage the account."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from tests.conftest import Account, link_oauth_client

API = "/api/v1"


async def test_oauth_token_cannot_manage_keys_webhooks_or_grants(
    client: TestClient[web.Request, web.Application], app: web.Application, account: Account
) -> None:
    """Devices work with a linked app's token; keys, webhooks and grants answer 403."""
    grant_id, token = await link_oauth_client(app[CORE_KEY], account)
    bearer = {"Authorization": f"Bearer {token}"}
    created = await client.post(
        f"{API}/devices", json={"type": "switch", "name": "Lamp"}, headers=bearer
    )
    assert created.status == 201
    device_id = (await created.json())["id"]
    flipped = await client.put(
        f"{API}/devices/{device_id}/state", json={"power": "ON"}, headers=bearer
    )
    assert flipped.status == 200
    refused = [
        await client.post(f"{API}/keys", json={"name": "x", "scope": "write"}, headers=bearer),
        await client.get(f"{API}/keys", headers=bearer),
        await client.post(f"{API}/webhooks", json={"url": "https://example.com/h"}, headers=bearer),
        await client.get(f"{API}/webhooks", headers=bearer),
        await client.get(f"{API}/grants", headers=bearer),
        await client.delete(f"{API}/grants/{grant_id}", headers=bearer),
    ]
    assert [r.status for r in refused] == [403] * len(refused)
    # The person, with a personal key, still manages everything and still sees the grant.
    grants = await client.get(f"{API}/grants", headers=account.headers)
    assert [g["id"] for g in (await grants.json())["items"]] == [grant_id]
    keys = await client.get(f"{API}/keys", headers=account.headers)
    assert len((await keys.json())["items"]) == 1
