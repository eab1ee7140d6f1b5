"""The app starts, answers health checks and stops."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient


async def test_healthz_and_readyz(client: TestClient[web.Request, web.Application]) -> None:
    """Both operations endpoints answer once the app has started."""
    health = await client.get("/healthz")
    assert health.status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["status"] == "ready"
