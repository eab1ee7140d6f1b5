"""Device-scoped API keys through the whole app on PostgreSQL, served as the app role.

The key is found by ``sr_api_key_by_digest`` (SECURITY DEFINER, before the tenant is known)
and the device list and activity are read under row-level security.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import DatabaseSettings, Settings, load_settings
from tests.api.conftest import API, create_device
from tests.conftest import make_account
from tests.postgres_support import ScratchDatabase, migrated_database


@pytest.fixture
async def database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database, migrated once by its owner."""
    async with migrated_database() as fresh:
        yield fresh


@pytest.fixture
def pg_settings(tmp_path: Path, database: ScratchDatabase) -> Settings:
    """Settings on PostgreSQL as the app role."""
    base = load_settings(data_dir=tmp_path / "data", environ={})
    return dataclasses.replace(base, database=DatabaseSettings(url=database.app_url))


async def test_scoped_key_on_postgres(
    pg_settings: Settings, aiohttp_client: Callable[..., Any]
) -> None:
    """Create, authenticate, list, refuse: the same answers as on SQLite."""
    app = create_app(pg_settings)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    core = app[CORE_KEY]
    assert (await core.store.settings_report())["engine"] == "postgresql"
    alice = await make_account(core, "alice@example.com")
    mallory = await make_account(core, "mallory@example.net", new_tenant=True)
    lamp = await create_device(client, alice, name="Lamp")
    fan = await create_device(client, alice, name="Fan")
    theirs = await create_device(client, mallory, name="Theirs")

    refused = await client.post(
        f"{API}/keys",
        json={"name": "x", "scope": "write", "device_ids": [theirs["id"]]},
        headers=alice.headers,
    )
    assert refused.status == 422
    assert (await refused.json())["field"] == "device_ids"

    made = await client.post(
        f"{API}/keys",
        json={"name": "ifttt", "scope": "write", "device_ids": [lamp["id"]]},
        headers=alice.headers,
    )
    assert made.status == 201, await made.text()
    key = await made.json()
    assert key["device_ids"] == [lamp["id"]]
    headers = {"Authorization": f"Bearer {key['key']}"}

    changed = await client.put(
        f"{API}/devices/{lamp['id']}/state", json={"power": "ON"}, headers=headers
    )
    assert changed.status == 200, await changed.text()
    assert (await client.get(f"{API}/devices/{fan['id']}", headers=headers)).status == 404
    assert (await client.get(f"{API}/devices/{theirs['id']}", headers=headers)).status == 404
    listed = await (await client.get(f"{API}/devices", headers=headers)).json()
    assert [d["id"] for d in listed["items"]] == [lamp["id"]]
    activity = await (await client.get(f"{API}/activity", headers=headers)).json()
    assert {e["device_id"] for e in activity["items"]} == {lamp["id"]}
    assert (await client.get(f"{API}/keys", headers=headers)).status == 403
    keys = await (await client.get(f"{API}/keys", headers=alice.headers)).json()
    assert {item["name"]: item["device_ids"] for item in keys["items"]} == {
        "ifttt": [lamp["id"]],
        "test": None,
    }
