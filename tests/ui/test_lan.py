"""Opened by the machine's network address: same-origin checks accept the origin a request
came to (or the forwarded one behind a trusted proxy), still refuse other sites, and say why;
``serve --host 0.0.0.0`` prints a setup link for each address."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import ifaddr
import pytest

from staterelay.settings import Settings
from tests.processes import free_port
from tests.ui.homes import Browse, MakeApp, sign_in_home
from tests.web.support import FakeClock, build_app

LAN = "raspberrypi.local:8080"


async def test_forms_accept_the_origin_the_request_came_to(
    make_app: MakeApp, browse: Browse
) -> None:
    """Host raspberrypi.local:8080 and an Origin of the same: the toggle works, while the
    public URL is still http://localhost:8080; another site is refused with the reason."""
    home = await sign_in_home(browse, make_app(), "sam@example.com")
    lamp = await home.add_device("switch", "Lamp")
    path = f"/dashboard/devices/{lamp}/state"
    same = {"Host": LAN, "Origin": f"http://{LAN}", "Accept": "application/json"}
    answer = await home.post(path, {"power": "ON"}, headers=same)
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["device"]["state"]["power"] == "ON"
    for origin in ("http://evil.example", f"https://{LAN}", "http://raspberrypi.local:8081"):
        refused = await home.post(path, {"power": "OFF"}, headers={**same, "Origin": origin})
        assert refused.status == 403, origin
        body = await refused.json()
        assert f"came from a page of {origin}" in body["error"]
        assert f"sent to http://{LAN}" in body["error"]
    device = await home.core.devices.get(home.principal, lamp)
    assert device.properties["power"].value == "ON"
    page = await home.post(
        path, {"power": "OFF"}, headers={"Host": LAN, "Origin": "http://x.example"}
    )
    assert page.status == 403
    assert "Request from another site" in await page.text()


async def test_a_trusted_proxy_forwards_the_origin(
    settings: Settings, clock: FakeClock, browse: Browse, tmp_path: Path
) -> None:
    """Behind Caddy (a trusted proxy) the forwarded host and scheme are the page's origin;
    from an address that is not a trusted proxy the same headers count for nothing."""
    forwarded = {
        "Origin": "https://home.example.com",
        "X-Forwarded-Host": "home.example.com",
        "X-Forwarded-Proto": "https",
        "Accept": "application/json",
    }
    for proxies, status in ((("127.0.0.1/32",), 200), (("10.9.9.0/24",), 403)):
        server = dataclasses.replace(settings.server, trusted_proxies=proxies)
        data_dir = tmp_path / f"data-{status}"
        app = build_app(dataclasses.replace(settings, server=server, data_dir=data_dir), clock)
        home = await sign_in_home(browse, app, f"sam{status}@example.com")
        lamp = await home.add_device("switch", "Lamp")
        answer = await home.post(
            f"/dashboard/devices/{lamp}/state", {"power": "ON"}, headers=forwarded
        )
        assert answer.status == status, proxies


async def test_the_live_feed_takes_the_page_origin_and_explains_a_refusal(
    make_app: MakeApp, browse: Browse
) -> None:
    """The WebSocket opens from the LAN origin; the check a refused page makes says why."""
    home = await sign_in_home(browse, make_app(), "sam@example.com")
    client = home.browser.client
    ws = await client.ws_connect("/dashboard/ws", headers={"Host": LAN, "Origin": f"http://{LAN}"})
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello"
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect(
            "/dashboard/ws", headers={"Host": LAN, "Origin": "http://evil.example"}
        )
    check = "/dashboard/live/check"
    ok = await home.post(check, {}, headers={"Host": LAN, "Origin": f"http://{LAN}"})
    assert (ok.status, await ok.json()) == (200, {"ok": True})
    refused = await home.post(
        check,
        {},
        headers={"Host": LAN, "Origin": "http://evil.example", "Accept": "application/json"},
    )
    assert refused.status == 403
    assert (
        "StateRelay only accepts forms and changes from its own pages"
        in (await refused.json())["error"]
    )


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, as ifaddr lists them."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith(("127.", "169.254.")):
                found.append(ip.ip)
    return found


def test_serve_on_every_address_prints_a_link_for_each(tmp_path: Path) -> None:
    """--host 0.0.0.0 without a public URL: a setup link per address, the .local name
    first, and one line saying what public_url is for."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "staterelay",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "No public URL is set" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        assert proc.stderr is not None
        lines.append(proc.stderr.read())
        proc.stderr.close()
    text = "".join(lines)
    name = socket.gethostname().split(".")[0]
    token = text.split("/setup?token=")[1].split()[0]
    links = [line.strip() for line in lines if "/setup?token=" in line and line.startswith("  ")]
    assert links[0] == f"http://{name}.local:{port}/setup?token={token}"
    for address in lan_addresses():
        assert f"  http://{address}:{port}/setup?token={token}\n" in text
    assert links[-1] == f"http://localhost:{port}/setup?token={token}"
    assert not any("127.0.0.1" in link for link in links)
    assert "set server.public_url, or serve --public-url" in text
    assert f"serve --public-url http://{name}.local:{port}" in text
