"""One URL space: every prefix on one public name, or each role's prefixes on its own host."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from staterelay.app.factory import create_app
from staterelay.app.hosts import HostRouter
from staterelay.app.registry import BUILTIN
from staterelay.app.surfaces import SurfaceTable
from staterelay.settings import HostsSettings, ServerSettings, Settings

SURFACES = SurfaceTable.of(BUILTIN)
SPLIT = HostsSettings(
    app="app.example.test",
    api="api.example.test",
    auth="auth.example.test",
    alexa="alexa.example.test",
    ifttt="ifttt.example.test",
)


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/", "app"),
        ("/dashboard/devices", "app"),
        ("/login", "app"),
        ("/api/v1/devices", "api"),
        ("/oauth/token", "auth"),
        ("/.well-known/oauth-authorization-server", "auth"),
        ("/alexa/smart_home", "alexa"),
        ("/ifttt/v1/status", "ifttt"),
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/apiary", "app"),
    ],
)
def test_role_of_path(path: str, role: str | None) -> None:
    """Each prefix belongs to one role; operations paths to none."""
    assert SURFACES.role_of(path) == role


def test_router_rules() -> None:
    """Split hosts serve only their prefixes (ports ignored); one-name mode serves all."""
    split = HostRouter(SPLIT, SURFACES)
    assert split.allows("api.example.test", "/api/v1/devices")
    assert split.allows("API.example.test:443", "/api/v1/devices")
    assert not split.allows("app.example.test", "/api/v1/devices")
    assert not split.allows("api.example.test", "/dashboard")
    assert not split.allows("unknown.example.test", "/api/v1/devices")
    assert split.allows("anything", "/healthz")
    assert split.allows("auth.example.test", "/login")  # the consent flow signs in there
    assert split.allows("auth.example.test", "/static/app.css")
    assert not split.allows("auth.example.test", "/dashboard")
    assert not split.allows("api.example.test", "/login")
    single = HostRouter(HostsSettings(), SURFACES)
    assert single.allows("whatever:8080", "/api/v1/devices")
    assert single.allows(None, "/oauth/token")


async def test_split_hosts_on_a_running_server(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """Against a live app, the API answers on its host and 404s on the app host."""
    split = dataclasses.replace(settings, server=ServerSettings(hosts=SPLIT))
    client = await aiohttp_client(create_app(split))
    on_api = await client.get("/api/v1/openapi.json", headers={"Host": "api.example.test"})
    assert on_api.status == 200
    on_app = await client.get("/api/v1/openapi.json", headers={"Host": "app.example.test"})
    assert on_app.status == 404
    assert on_app.content_type == "application/problem+json"
    health = await client.get("/healthz", headers={"Host": "ifttt.example.test"})
    assert health.status == 200


async def test_single_name_serves_every_prefix(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """With only public_url, any Host reaches the API."""
    client = await aiohttp_client(create_app(settings))
    for host in ("localhost:8080", "app.example.test", "203.0.113.9"):
        response = await client.get("/api/v1/openapi.json", headers={"Host": host})
        assert response.status == 200


async def test_https_public_url_sends_hsts(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """Behind an https public URL every answer carries Strict-Transport-Security; not on http."""
    secure = dataclasses.replace(
        settings, server=ServerSettings(public_url="https://home.example.test")
    )
    client = await aiohttp_client(create_app(secure))
    for path in ("/healthz", "/api/v1/openapi.json", "/login", "/no-such-page"):
        response = await client.get(path)
        assert response.headers.get("Strict-Transport-Security") == "max-age=31536000", path
    plain = await aiohttp_client(create_app(settings))
    assert "Strict-Transport-Security" not in (await plain.get("/healthz")).headers
