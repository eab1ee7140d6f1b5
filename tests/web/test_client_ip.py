"""Which address sign-in throttling counts: the socket peer unless a trusted proxy forwarded."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.browser.sessions import client_ip
from staterelay.settings import ServerSettings, Settings


def request_from(settings: Settings, peer: str, forwarded: str | None) -> web.Request:
    """A request as it arrives from ``peer`` with an optional X-Forwarded-For."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}

    class Transport:
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (peer, 12345) if name == "peername" else default

    return make_mocked_request("POST", "/login", headers=headers, app=app, transport=Transport())


def test_direct_clients_cannot_choose_their_address(settings: Settings) -> None:
    """Without a trusted proxy in between, the header is ignored."""
    assert client_ip(request_from(settings, "203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_a_local_proxy_names_the_client(settings: Settings) -> None:
    """Caddy on this machine forwards; the right-most untrusted entry is the client."""
    forwarded = "198.51.100.99, 198.51.100.1"  # the client may prepend anything it likes
    assert client_ip(request_from(settings, "127.0.0.1", forwarded)) == "198.51.100.1"
    assert client_ip(request_from(settings, "127.0.0.1", None)) == "127.0.0.1"
    assert client_ip(request_from(settings, "127.0.0.1", "not-an-ip")) == "127.0.0.1"


def test_trusted_networks_come_from_settings(settings: Settings) -> None:
    """A proxy on the LAN is trusted only when configured."""
    lan = "192.0.2.10"  # documentation range, never contacted
    assert client_ip(request_from(settings, lan, "198.51.100.1")) == lan
    widened = dataclasses.replace(
        settings, server=ServerSettings(trusted_proxies=("192.0.2.0/24",))
    )
    assert client_ip(request_from(widened, lan, "198.51.100.1, 192.0.2.11")) == "198.51.100.1"
