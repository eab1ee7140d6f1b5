"""Access lines: the request's facts as JSON fields (tenant included), a readable text line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.logs import ACCESS_LOGGER, TEXT_FORMAT, JsonFormatter
from tests.conftest import Account

Client = TestClient[web.Request, web.Application]


class Lines:
    """What the access logger wrote, in JSON and in text."""

    def __init__(self) -> None:
        self.json = io.StringIO()
        self.text = io.StringIO()

    def entries(self) -> list[dict[str, Any]]:
        """The JSON lines, parsed."""
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Capture the access logger through both formatters."""
    captured = Lines()
    logger = logging.getLogger(ACCESS_LOGGER)
    handlers: list[logging.Handler] = []
    for stream, formatter in (
        (captured.json, JsonFormatter()),
        (captured.text, logging.Formatter(TEXT_FORMAT)),
    ):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        handlers.append(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield captured
    logger.setLevel(level)
    for handler in handlers:
        logger.removeHandler(handler)


async def test_json_access_line_carries_the_request_facts(
    client: Client, account: Account, lines: Lines
) -> None:
    """route (the template), method, status, duration_ms, request_id and tenant are keys."""
    response = await client.get(
        "/api/v1/devices/dev_missing", headers={**account.headers, "X-Request-ID": "req-42"}
    )
    assert response.status == 404
    [entry] = [e for e in lines.entries() if e.get("request_id") == "req-42"]
    assert entry["route"] == "/api/v1/devices/{device_id}"
    assert entry["method"] == "GET"
    assert entry["status"] == 404
    assert isinstance(entry["duration_ms"], float)
    assert entry["tenant"] == account.tenant_id
    assert entry["logger"] == ACCESS_LOGGER
    text = lines.text.getvalue()
    assert "GET /api/v1/devices/{device_id} 404 " in text
    assert f"tenant={account.tenant_id}" in text
    assert account.key not in lines.json.getvalue() + text


async def test_anonymous_requests_have_no_tenant(client: Client, lines: Lines) -> None:
    """A request without a credential logs no tenant, and a refused key none either."""
    await client.get("/healthz", headers={"X-Request-ID": "anon-1"})
    refused = await client.get(
        "/api/v1/devices", headers={"Authorization": "Bearer sr_unknown", "X-Request-ID": "bad-1"}
    )
    assert refused.status == 401
    by_id = {e["request_id"]: e for e in lines.entries()}
    assert "tenant" not in by_id["anon-1"]
    assert "tenant" not in by_id["bad-1"]
    assert by_id["bad-1"]["status"] == 401
    assert "sr_unknown" not in lines.json.getvalue()


async def test_tenants_do_not_leak_between_requests_on_one_connection(
    client: Client, account: Account, lines: Lines
) -> None:
    """Keep-alive requests share a connection task; each starts with no tenant."""
    await client.get("/api/v1/devices", headers={**account.headers, "X-Request-ID": "k-1"})
    await client.get("/healthz", headers={"X-Request-ID": "k-2"})
    by_id = {e["request_id"]: e for e in lines.entries()}
    assert by_id["k-1"]["tenant"] == account.tenant_id
    assert "tenant" not in by_id["k-2"]


async def test_a_live_feed_cut_by_shutdown_is_not_a_server_error(
    client: Client, account: Account, lines: Lines
) -> None:
    """Stopping the server cancels every open live feed's handler: its access line says the
    request was closed (499), never 500."""
    ws = await client.ws_connect("/dashboard/ws", headers=account.headers)
    assert (await ws.receive_json(timeout=2))["type"] == "hello"
    await client.server.close()
    feeds = [e for e in lines.entries() if e["route"] == "/dashboard/ws"]
    assert [e["status"] for e in feeds] == [499]
    await ws.close()
