"""Authentication and scopes: bearer tokens, API key lifecycle, ``/me``."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from staterelay.core import Core
from tests.api.conftest import API, Client, api_routes, assert_problem, assert_schema, fill
from tests.conftest import Account, make_account

PUBLIC = {("GET", f"{API}/openapi.json")}
IDS = {"device_id": "dev_x", "webhook_id": "whk_x", "key_id": "key_x", "grant_id": "grt_x"}


def _protected(app: web.Application) -> list[tuple[str, str]]:
    return [route for route in api_routes(app) if route not in PUBLIC]


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, 'Bearer realm="staterelay"'),
        ("Bearer", 'Bearer realm="staterelay"'),
        ("Basic YWxpY2U6c2VjcmV0", 'Bearer realm="staterelay"'),
        ("Bearer sr_not_a_real_key", 'Bearer realm="staterelay", error="invalid_token"'),
        ("Bearer some-oauth-token", 'Bearer realm="staterelay", error="invalid_token"'),
    ],
)
async def test_every_route_needs_a_bearer_token(
    client: Client, app: web.Application, authorization: str | None, challenge: str
) -> None:
    """Every API route but the OpenAPI document answers 401 problem+json with a challenge."""
    headers = {"Authorization": authorization} if authorization else {}
    routes = _protected(app)
    assert len(routes) >= 20
    for method, template in routes:
        response = await client.request(
            method, fill(template, **IDS), json={"name": "x"}, headers=headers
        )
        await assert_problem(response, 401, "not_authenticated")
        assert response.headers["WWW-Authenticate"] == challenge, (method, template)


async def test_openapi_document_needs_no_token(client: Client) -> None:
    """The document is public."""
    response = await client.get(f"{API}/openapi.json")
    assert response.status == 200
    assert (await response.json())["openapi"] == "3.1.0"


async def test_me_describes_the_caller(client: Client, account: Account) -> None:
    """``/me`` names the user, household, scopes and credential."""
    response = await client.get(f"{API}/me", headers=account.headers)
    assert response.status == 200
    me = await response.json()
    assert_schema("Me", me)
    keys = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    assert me == {
        "user_id": account.user_id,
        "email": account.email,
        "tenant_id": account.tenant_id,
        "scopes": ["read", "write"],
        "credential": "api_key",
        "credential_id": keys["items"][0]["id"],
        "client_id": None,
        "device_ids": None,
    }


async def test_read_scope_reads_but_cannot_write(
    client: Client, core: Core, account: Account
) -> None:
    """A read key lists and reads but every change, including a new key, is 403."""
    reader = await make_account(core, "reader@example.com", scope="read")
    device_response = await client.post(
        f"{API}/devices", json={"type": "switch", "name": "Lamp"}, headers=account.headers
    )
    device: dict[str, Any] = await device_response.json()
    assert reader.tenant_id == account.tenant_id
    listed = await client.get(f"{API}/devices", headers=reader.headers)
    assert [d["id"] for d in (await listed.json())["items"]] == [device["id"]]
    attempts = [
        ("POST", f"{API}/devices", {"type": "switch", "name": "Fan"}),
        ("PUT", f"{API}/devices/{device['id']}/state", {"power": "ON"}),
        ("PATCH", f"{API}/devices/{device['id']}", {"name": "Mine"}),
        ("DELETE", f"{API}/devices/{device['id']}", None),
        ("POST", f"{API}/webhooks", {"url": "http://127.0.0.1:9/"}),
        ("POST", f"{API}/keys", {"name": "wider", "scope": "write"}),
        ("POST", f"{API}/keys", {"name": "same", "scope": "read"}),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, json=body, headers=reader.headers)
        await assert_problem(response, 403, "forbidden")
    after = await client.get(f"{API}/devices/{device['id']}", headers=account.headers)
    assert await after.json() == device
    keys = await (await client.get(f"{API}/keys", headers=reader.headers)).json()
    assert len(keys["items"]) == 1
    me = await (await client.get(f"{API}/me", headers=reader.headers)).json()
    assert me["scopes"] == ["read"]


async def test_api_key_create_list_use_revoke(client: Client, account: Account) -> None:
    """A new key is shown once, works, is listed without its secret and stops at revocation."""
    created = await client.post(
        f"{API}/keys", json={"name": " script ", "scope": "read"}, headers=account.headers
    )
    assert created.status == 201
    key = await created.json()
    assert_schema("ApiKeyCreated", key)
    secret = key["key"]
    assert secret.startswith("sr_")
    assert key["prefix"] == secret[:7]
    assert key["name"] == "script"
    assert key["scope"] == "read"
    assert key["scopes"] == ["read"]
    assert key["revoked_at"] is None
    bearer = {"Authorization": f"Bearer {secret}"}

    me = await (await client.get(f"{API}/me", headers=bearer)).json()
    assert me["credential_id"] == key["id"]
    assert me["scopes"] == ["read"]

    listed = await client.get(f"{API}/keys", headers=account.headers)
    body = await listed.json()
    assert_schema("ApiKeyList", body)
    assert body["next_cursor"] is None
    assert body["items"][0]["id"] == key["id"]
    assert all("key" not in item for item in body["items"])
    assert secret not in await listed.text()

    revoked = await client.delete(f"{API}/keys/{key['id']}", headers=account.headers)
    assert revoked.status == 204
    refused = await client.get(f"{API}/me", headers=bearer)
    await assert_problem(refused, 401, "not_authenticated")
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    after = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    entry = next(item for item in after["items"] if item["id"] == key["id"])
    assert entry["revoked_at"] is not None
    again = await client.delete(f"{API}/keys/{key['id']}", headers=account.headers)
    await assert_problem(again, 404, "not_found")


async def test_write_key_can_create_write_key(client: Client, account: Account) -> None:
    """A write key may create another write key, which can write."""
    created = await client.post(
        f"{API}/keys", json={"name": "ci", "scope": "write"}, headers=account.headers
    )
    key = await created.json()
    assert key["scopes"] == ["read", "write"]
    response = await client.post(
        f"{API}/devices",
        json={"type": "switch", "name": "Made by CI"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    assert response.status == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "k", "scope": "admin"}, "scope"),
        ({"name": "", "scope": "read"}, "name"),
        ({"name": "k" * 65, "scope": "read"}, "name"),
        ({"scope": "read"}, "name"),
        ({"name": "k"}, "scope"),
        ({"name": "k", "scope": ["read"]}, "scope"),
    ],
)
async def test_api_key_create_validates(
    client: Client, account: Account, body: dict[str, Any], field: str
) -> None:
    """Bad key names and scopes are 422 naming the field."""
    response = await client.post(f"{API}/keys", json=body, headers=account.headers)
    await assert_problem(response, 422, "invalid_value", field=field)


async def test_a_key_can_revoke_itself(client: Client, account: Account) -> None:
    """Revoking the key in use takes effect on the next request."""
    keys = await (await client.get(f"{API}/keys", headers=account.headers)).json()
    own = keys["items"][0]["id"]
    response = await client.delete(f"{API}/keys/{own}", headers=account.headers)
    assert response.status == 204
    await assert_problem(
        await client.get(f"{API}/devices", headers=account.headers), 401, "not_authenticated"
    )
