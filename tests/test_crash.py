"""kill -9 while acknowledging writes with deliveries pending: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.processes import ServerProcess, run_cli

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook receiver on loopback that records every delivery, slowly at first."""

    def __init__(self) -> None:
        self.delay = 0.2
        self.bodies: list[dict[str, Any]] = []
        self.ids: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        """Record the event, after an optional delay."""
        body = await request.json()
        await asyncio.sleep(self.delay)
        self.bodies.append(body)
        self.ids.append(request.headers["webhook-id"])
        return web.Response(status=204)


async def test_checklist_27_kill_minus_nine_loses_nothing_acknowledged(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    """security.md section 10, item 27: every acknowledged write is stored and its webhook
    event arrives after a restart."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    target = await aiohttp_server(app)

    data_dir = tmp_path / "data"
    run_cli(data_dir, "user", "create", "--email", "crash@example.com")
    key = run_cli(data_dir, "apikey", "create", "--email", "crash@example.com", "--scope", "write")
    env = {"STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true", "STATERELAY_LOG_LEVEL": "warning"}
    auth = {"Authorization": f"Bearer {key}"}

    server = ServerProcess(data_dir, env)
    acknowledged: list[int] = []
    try:
        await server.start()
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(
                f"{server.url}/api/v1/devices", json={"type": "switch", "name": "Crash"}
            ) as response:
                assert response.status == 201
                device_id = (await response.json())["id"]
            async with http.post(
                f"{server.url}/api/v1/webhooks",
                json={
                    "url": f"http://127.0.0.1:{target.port}/hook",
                    "event_types": ["state.changed"],
                },
            ) as response:
                assert response.status == 201

            async def writer(worker: int) -> None:
                for i in range(200):
                    value = "ON" if (i + worker) % 2 == 0 else "OFF"
                    try:
                        async with http.put(
                            f"{server.url}/api/v1/devices/{device_id}/state",
                            json={"power": value},
                        ) as response:
                            if response.status == 200:
                                acknowledged.append((await response.json())["version"])
                    except aiohttp.ClientError:
                        return

            writers = [asyncio.create_task(writer(w)) for w in range(4)]
            deadline = time.monotonic() + 20
            while len(acknowledged) < 150 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            server.kill()
            await asyncio.gather(*writers)
    finally:
        server.ensure_stopped()

    assert len(acknowledged) >= 150
    assert len(receiver.bodies) < len(acknowledged), "deliveries should still be pending"
    # The database holds at least every acknowledged version.
    with sqlite3.connect(data_dir / "staterelay.db") as conn:
        stored_version = conn.execute(
            "SELECT version FROM devices WHERE id = ?", (device_id,)
        ).fetchone()[0]
    assert stored_version >= max(acknowledged)

    receiver.delay = 0.0
    restarted = ServerProcess(data_dir, env)
    try:
        await restarted.start()
        deadline = time.monotonic() + 60
        wanted = set(acknowledged)
        while time.monotonic() < deadline:
            seen = {body["version"] for body in receiver.bodies}
            if wanted <= seen:
                break
            await asyncio.sleep(0.1)
        seen = {body["version"] for body in receiver.bodies}
        assert wanted <= seen, f"missing events for versions {sorted(wanted - seen)[:10]}"
        assert all(body["device"]["id"] == device_id for body in receiver.bodies)
        assert restarted.terminate() == 0
    finally:
        restarted.ensure_stopped()
