"""Two ``staterelay serve`` replicas on one PostgreSQL database and a Redis of the test's own:
live updates cross replicas within a second, everything keeps working while Redis is gone,
and crossing resumes within seconds once Redis is back on its port."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.postgres_support import fresh_database
from tests.processes import ServerProcess, run_cli
from tests.redis_support import RedisServerProcess, unique_prefix

pytestmark = pytest.mark.slow

EMAIL = "replicas@example.com"


class Receiver:
    """A webhook receiver on loopback recording each delivered event's device version."""

    def __init__(self) -> None:
        self.versions: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        """Record the delivery."""
        body = await request.json()
        self.versions.append(body["version"])
        return web.Response(status=204)


async def state_message(
    ws: aiohttp.ClientWebSocketResponse, device_id: str, version: int, timeout: float
) -> dict[str, Any]:
    """The feed's ``device.state`` message for ``version`` of the device (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no state message for version {version} within {timeout} s")
        message = await ws.receive(timeout=left)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data: dict[str, Any] = json.loads(message.data)
        device = data.get("device") or {}
        ours = data["type"] == "device.state" and device.get("id") == device_id
        if ours and device["version"] == version:
            return data


async def open_feed(http: aiohttp.ClientSession, server: ServerProcess) -> Any:
    """A live feed on ``server``, opened with the session's bearer token, after its hello."""
    ws = await http.ws_connect(f"{server.url}/dashboard/ws")
    hello = await ws.receive_json(timeout=2)
    assert hello["type"] == "hello"
    return ws


async def test_replicas_share_live_updates_and_survive_redis_going_away(
    tmp_path: Path, aiohttp_server: Callable[..., Any], own_redis: RedisServerProcess
) -> None:
    """A on one replica sees B's changes in < 1 s; without Redis both serve, deliver
    webhooks and update their own pages; with Redis back, A hears B again within seconds."""
    receiver = Receiver()
    hooks = web.Application()
    hooks.router.add_post("/hook", receiver.handle)
    target = await aiohttp_server(hooks)

    async with fresh_database() as database:
        data_dir = tmp_path / "data"  # the replicas share its secret key
        env = {"STATERELAY_DATABASE_URL": database.app_url, "STATERELAY_LOG_LEVEL": "warning"}
        run_cli(data_dir, "db", "migrate", "--url", database.owner_url, env=env)
        run_cli(data_dir, "user", "create", "--email", EMAIL, env=env)
        key = run_cli(data_dir, "apikey", "create", "--email", EMAIL, "--scope", "write", env=env)
        serve_env = {
            **env,
            "STATERELAY_REDIS_URL": own_redis.url,
            "STATERELAY_REDIS_KEY_PREFIX": unique_prefix(),
            "STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
        }
        a, b = ServerProcess(data_dir, serve_env), ServerProcess(data_dir, serve_env)
        try:
            await asyncio.gather(a.start(), b.start())
            headers = {"Authorization": f"Bearer {key}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(
                    f"{b.url}/api/v1/devices", json={"type": "switch", "name": "Hall"}
                ) as response:
                    assert response.status == 201
                    device_id = (await response.json())["id"]
                async with http.post(
                    f"{b.url}/api/v1/webhooks",
                    json={
                        "url": f"http://127.0.0.1:{target.port}/hook",
                        "event_types": ["state.changed"],
                    },
                ) as response:
                    assert response.status == 201

                async def change_on_b(power: str) -> int:
                    async with http.put(
                        f"{b.url}/api/v1/devices/{device_id}/state", json={"power": power}
                    ) as response:
                        assert response.status == 200
                        version: int = (await response.json())["version"]
                        return version

                feed_a = await open_feed(http, a)

                # 1. With Redis: B's change reaches A's page within a second.
                started = time.monotonic()
                version = await change_on_b("ON")
                message = await state_message(feed_a, device_id, version, timeout=1.0)
                assert time.monotonic() - started < 1.0
                assert message["device"]["state"] == {"power": "ON"}

                # 2. Redis killed: both replicas serve, B's own page and the webhook still
                # get the change, and A reads it from the database.
                own_redis.kill()
                feed_b = await open_feed(http, b)
                version = await change_on_b("OFF")
                message = await state_message(feed_b, device_id, version, timeout=1.0)
                assert message["device"]["state"] == {"power": "OFF"}
                for server in (a, b):
                    async with http.get(f"{server.url}/api/v1/devices/{device_id}") as response:
                        assert response.status == 200
                        assert (await response.json())["state"]["power"] == "OFF"
                    async with http.get(f"{server.url}/readyz") as response:
                        assert response.status == 200
                deadline = time.monotonic() + 15
                while version not in receiver.versions and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert version in receiver.versions, "the webhook was not delivered"

                # 3. Redis back on its port: A hears B again within a few seconds.
                await own_redis.start()
                deadline = time.monotonic() + 10
                power = "ON"
                while True:
                    version = await change_on_b(power)
                    try:
                        await state_message(feed_a, device_id, version, timeout=0.5)
                        break
                    except TimeoutError:
                        assert time.monotonic() < deadline, "A never heard B again"
                    power = "OFF" if power == "ON" else "ON"
                started = time.monotonic()
                version = await change_on_b("ON" if power == "OFF" else "OFF")
                await state_message(feed_a, device_id, version, timeout=1.0)
                assert time.monotonic() - started < 1.0

                await feed_a.close()
                await feed_b.close()
            for server in (a, b):
                assert server.terminate() == 0
                log = server.stderr()
                assert log.count(" is unreachable (") == 1, log  # once on loss
                assert log.count(" answers again: ") == 1, log  # once on recovery
        finally:
            a.ensure_stopped()
            b.ensure_stopped()
