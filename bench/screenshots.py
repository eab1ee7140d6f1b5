"""Screenshots of the dashboard's main pages for the README, desktop and phone, light and dark.

Usage: ``python bench/screenshots.py [--out docs/screenshots]``. Needs Playwright
(``pip install -e '.[test]'``) and Debian's Chromium at /usr/bin/chromium. It starts
StateRelay in-process on 127.0.0.1 with a fresh data directory, fills it with a few devices,
a webhook and a linked Alexa (both answered by recording servers on loopback, so the
activity log shows real delivery results), then photographs each page. Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import tempfile
from pathlib import Path

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core.oauth_clients import alexa_preset
from staterelay.core.records import Principal
from staterelay.settings import (
    AlexaSettings,
    ServerSettings,
    Settings,
    WebhookSettings,
    load_settings,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
EMAIL = "sam@example.com"
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
MAX_HEIGHT = 1500  # desktop pages are photographed whole, up to this height


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def receiver(status: int) -> tuple[web.AppRunner, str]:
    """A loopback server answering every POST with ``status`` (a webhook or Alexa's gateway)."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def demo_settings(data_dir: Path, port: int, gateway: str) -> Settings:
    """Defaults on a fresh data dir, served at 127.0.0.1, Alexa events to a loopback gateway."""
    base = load_settings(data_dir=data_dir, environ={})
    return dataclasses.replace(
        base,
        server=dataclasses.replace(
            ServerSettings(), host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"
        ),
        webhooks=WebhookSettings(allow_private_networks=True),
        alexa=AlexaSettings(
            event_gateway_url=f"{gateway}/v3/events",
            messaging_client_id="amzn1.application-oa2-client.demo",
            messaging_client_secret="demo",
            relay_secret="demo-relay-secret",
        ),
    )


async def populate(app: web.Application, hook_url: str) -> None:
    """An admin with six devices, a webhook, an Alexa link and a little history."""
    core = app[CORE_KEY]
    user = await core.users.create(email=EMAIL, password=PASSWORD, is_admin=True)
    me = Principal(
        tenant_id=user.tenant_id,
        user_id=user.id,
        scopes=frozenset({"read", "write"}),
        credential="session",
        credential_id="demo",
    )
    await core.alexa.link(
        me, access_token="demo-access", refresh_token="demo-refresh", expires_in=3600, region="EU"
    )
    await core.webhooks.create(
        me,
        {"url": hook_url + "/staterelay", "description": "Home Assistant", "event_types": None},
    )
    _, key = await core.auth.create_api_key(user, name="Home Assistant", scope="write")
    devices = core.devices
    movie = await devices.create(
        me,
        type="switch",
        name="Movie mode",
        options={"routine_trigger": True},
        room="Living room",
        source="ui",
    )
    lamp = await devices.create(
        me, type="dimmer", name="Living room lamp", room="Living room", source="ui"
    )
    door = await devices.create(
        me, type="contact_sensor", name="Front door", room="Hallway", source="api"
    )
    await devices.create(
        me, type="motion_sensor", name="Hallway motion", room="Hallway", source="api"
    )
    greenhouse = await devices.create(
        me, type="temperature_sensor", name="Greenhouse", room="Garden", source="api"
    )
    bell = await devices.create(me, type="button", name="Doorbell", room="Hallway", source="ui")
    alexa = alexa_preset("M2DEMOVENDOR")
    await core.oauth.create_client(
        client_id="alexa-demo",
        name=alexa.name,
        redirect_uris=alexa.redirect_uris,
        token_endpoint_auth_method=alexa.token_endpoint_auth_method,
        scopes=alexa.scopes,
    )
    api = dataclasses.replace(me, credential="api_key", credential_id="key_demo")
    await devices.set_state(me, movie.id, {"power": "ON"}, source="alexa", cause="voice")
    await devices.set_state(me, lamp.id, {"power": "ON", "brightness": 60}, source="ui")
    await devices.set_state(api, door.id, {"detection": "DETECTED"}, source="api")
    await devices.set_state(api, door.id, {"detection": "NOT_DETECTED"}, source="api")
    await devices.set_state(
        api, greenhouse.id, {"temperature": 21.5}, source="ifttt", cause="IFTTT applet 42"
    )
    await devices.press(me, bell.id, source="ui")
    del key
    await asyncio.sleep(1.5)  # let the dispatcher deliver and record results


async def sign_in(page: Page, base: str) -> None:
    """Sign in through the form."""
    await page.goto(f"{base}/login")
    await page.fill("#email", EMAIL)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/dashboard")


PAGES = {
    "dashboard": "/dashboard",
    "device": "/dashboard/devices/{device}",
    "activity": "/dashboard/activity",
    "integrations": "/dashboard/integrations",
    "alexa-setup": "/dashboard/integrations/alexa",
    "ifttt-setup": "/dashboard/integrations/ifttt",
    "webhooks-setup": "/dashboard/integrations/webhooks",
    "settings": "/dashboard/settings",
}
# Photographed on a phone only: the dashboard scrolled to its cards, grouped by room.
ROOMS = "rooms"


async def shoot(browser: Browser, base: str, out: Path, device: str) -> list[Path]:
    """Every main page at both sizes in light mode; the dashboard in dark mode too."""
    written: list[Path] = []
    runs = [
        ("desktop", DESKTOP, "light", ["landing", *PAGES]),
        ("phone", PHONE, "light", ["landing", *PAGES, ROOMS]),
        ("desktop", DESKTOP, "dark", ["dashboard"]),
        ("phone", PHONE, "dark", ["dashboard"]),
    ]
    for size, viewport, scheme, names in runs:
        phone = size == "phone"
        context = await browser.new_context(
            viewport=viewport,
            color_scheme=scheme,
            device_scale_factor=2 if phone else 1,
            is_mobile=phone,
            has_touch=phone,
        )
        page = await context.new_page()
        suffix = size if scheme == "light" else f"{size}-dark"
        for name in names:
            if name == "landing":
                await page.goto(f"{base}/")
            else:
                if "/dashboard" not in page.url:
                    await sign_in(page, base)
                await page.goto(base + PAGES.get(name, "/dashboard").format(device=device))
                if await page.get_attribute("body", "data-live"):
                    await page.wait_for_selector("[data-live-status][data-state=live]")
                if name == ROOMS:
                    await page.locator("[data-device-grid]").scroll_into_view_if_needed()
                    await page.evaluate(
                        "window.scrollBy(0, document.querySelector('[data-device-grid]')"
                        ".getBoundingClientRect().top - 64)"
                    )
            path = out / f"{name}-{suffix}.png"
            if phone:
                await page.screenshot(path=str(path))
            else:
                height = await page.evaluate("document.documentElement.scrollHeight")
                clip = {
                    "x": 0,
                    "y": 0,
                    "width": viewport["width"],
                    "height": min(height, MAX_HEIGHT),
                }
                await page.screenshot(path=str(path), full_page=True, clip=clip)
            written.append(path)
        await context.close()
    return written


async def main() -> None:
    """Start, fill, photograph, stop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hook_runner, hook_url = await receiver(200)
    gateway_runner, gateway_url = await receiver(202)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(demo_settings(Path(tmp) / "data", port, gateway_url))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await populate(app, hook_url)
            core = app[CORE_KEY]
            user = await core.users.by_email(EMAIL)
            me = Principal(user.tenant_id, user.id, frozenset({"read"}), "session", "demo")
            first = (await core.devices.list(me)).items[0].id
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                written = await shoot(browser, f"http://127.0.0.1:{port}", args.out, first)
                await browser.close()
        finally:
            await runner.cleanup()
            await hook_runner.cleanup()
            await gateway_runner.cleanup()
    for path in written:
        print(path)


if __name__ == "__main__":
    asyncio.run(main())
