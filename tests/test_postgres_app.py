"""The whole application on PostgreSQL: migrated by the owner, served as the app role.

Starts ``create_app`` with ``database.url`` naming the app role (which owns nothing and is
bound by row-level security) and runs a short API flow: a device, a state change, and the
webhook delivery of that change to a receiver on loopback, signed and recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks import Webhook as WebhookVerifier

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import DatabaseSettings, Settings, WebhookSettings, load_settings
from staterelay.store import open_store
from tests.conftest import make_account
from tests.postgres_support import ScratchDatabase, fresh_database, migrated_database
from tests.processes import run_cli

API = "/api/v1"


@pytest.fixture
async def database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database, migrated once by its owner (``staterelay db migrate`` would do)."""
    async with migrated_database() as fresh:
        yield fresh


@pytest.fixture
def pg_settings(tmp_path: Path, database: ScratchDatabase) -> Settings:
    """Settings on PostgreSQL as the app role; loopback webhook receivers allowed."""
    base = load_settings(data_dir=tmp_path / "data", environ={})
    return dataclasses.replace(
        base,
        database=DatabaseSettings(url=database.app_url),
        webhooks=WebhookSettings(allow_private_networks=True, timeout_seconds=2.0),
    )


async def test_api_flow_and_webhook_delivery_on_postgres(
    pg_settings: Settings, aiohttp_client: Callable[..., Any], aiohttp_server: Any
) -> None:
    """Create a device, flip it, and see the signed event arrive and be recorded.

    (``pg_settings`` comes first so its database outlives the app's shutdown.)
    """
    received: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

    async def accept(request: web.Request) -> web.Response:
        received.put_nowait((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", accept)
    receiver: TestServer = await aiohttp_server(receiver_app)

    app = create_app(pg_settings)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    core = app[CORE_KEY]
    report = await core.store.settings_report()
    assert report["engine"] == "postgresql"
    assert report["row_level_security"] == "enforced"
    assert (await client.get("/readyz")).status == 200

    account = await make_account(core, "alice@example.com")
    other = await make_account(core, "mallory@example.net", new_tenant=True)
    headers = account.headers

    created = await client.post(
        f"{API}/devices", json={"type": "switch", "name": "Lamp"}, headers=headers
    )
    assert created.status == 201, await created.text()
    device = await created.json()
    hook = await client.post(
        f"{API}/webhooks", json={"url": str(receiver.make_url("/hook"))}, headers=headers
    )
    assert hook.status == 201, await hook.text()
    webhook = await hook.json()

    changed = await client.put(
        f"{API}/devices/{device['id']}/state", json={"power": "ON"}, headers=headers
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["version"] == device["version"] + 1

    body, delivered_headers = await asyncio.wait_for(received.get(), timeout=10)
    event = json.loads(body)
    assert event["type"] == "state.changed"
    assert json.dumps(event).count(device["id"]) >= 1
    verified = WebhookVerifier(webhook["secret"]).verify(body, delivered_headers)
    assert verified == event

    deliveries: list[dict[str, Any]] = []
    for _ in range(100):  # the result is recorded just after the receiver answers
        listed = await client.get(f"{API}/webhooks/{webhook['id']}/deliveries", headers=headers)
        deliveries = (await listed.json())["items"]
        if deliveries:
            break
        await asyncio.sleep(0.05)
    assert [d["status_code"] for d in deliveries] == [204]

    # Another tenant sees none of it, through the API on the same database.
    assert (await client.get(f"{API}/devices/{device['id']}", headers=other.headers)).status == 404
    assert (await (await client.get(f"{API}/devices", headers=other.headers)).json())["items"] == []
    assert (await client.get(f"{API}/devices/{device['id']}", headers=headers)).status == 200


async def test_db_migrate_prepares_the_database_for_the_app_role(tmp_path: Path) -> None:
    """`staterelay db migrate --url OWNER` migrates once and grants the role of database.url;
    a server as that role then starts without the owner's URL."""
    async with fresh_database() as database:
        env = {"STATERELAY_DATABASE_URL": database.app_url}
        run_cli(tmp_path / "data", "db", "migrate", "--url", database.owner_url, env=env)
        run_cli(tmp_path / "data", "db", "migrate", "--url", database.owner_url, env=env)
        store = open_store(database.app_url)
        await store.open()
        try:
            assert await store.ready()
            assert (await store.settings_report())["row_level_security"] == "enforced"
        finally:
            await store.close()


async def test_concurrent_relative_changes_all_count_on_postgres(
    pg_settings: Settings, aiohttp_client: Callable[..., Any]
) -> None:
    """Ten toggles and ten +5 brightness steps sent at once through the API's pool of
    connections: each is computed inside its own write under the device's row lock, so all
    land (the switch flips ten times, the dimmer ends 50 higher), and a dimmer at 0 is off."""
    client = await aiohttp_client(create_app(pg_settings))
    core = client.app[CORE_KEY]
    account = await make_account(core, "pg-concurrent@example.com")
    principal = await core.auth.authenticate(account.key)
    switch = await core.devices.create(principal, type="switch", name="Fan", source="api")
    dimmer = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await core.devices.set_state(principal, dimmer.id, {"brightness": 10}, source="api")

    def toggled(device: Any) -> dict[str, str]:
        return {"power": "OFF" if device.properties["power"].value == "ON" else "ON"}

    def brighter(device: Any) -> dict[str, int]:
        return {"brightness": min(100, device.properties["brightness"].value + 5)}

    await asyncio.gather(
        *(core.devices.set_state(principal, switch.id, toggled, source="api") for _ in range(10)),
        *(core.devices.set_state(principal, dimmer.id, brighter, source="api") for _ in range(10)),
    )
    fan = await core.devices.get(principal, switch.id)
    desk = await core.devices.get(principal, dimmer.id)
    assert (fan.version, fan.properties["power"].value) == (switch.version + 10, "OFF")
    assert desk.properties["brightness"].value == 60
    response = await client.put(
        f"{API}/devices/{dimmer.id}/state",
        json={"brightness": 0},
        headers={"Authorization": f"Bearer {account.key}"},
    )
    assert (await response.json())["state"] == {"power": "OFF", "brightness": 60}
