"""The dashboard in a real browser: Debian's Chromium driven by Playwright, on loopback.

One scenario walks the whole product (set-up, a switch, live updates, the log, an API key,
deleting); others check a phone-sized screen, the keyboard alone, and a dropped connection.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.core.records import Principal
from staterelay.settings import Settings
from staterelay.ui import LIVE_KEY
from tests.processes import free_port
from tests.skips import unavailable
from tests.web.support import PASSWORD, setup_links

try:
    playwright_api: Any = importlib.import_module("playwright.async_api")
except ImportError:  # the test extras install it, so CI never skips
    unavailable("playwright is missing: pip install -e '.[test]'", module_level=True)

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
PHONE = {"width": 390, "height": 844}

if not Path(CHROMIUM).exists():  # .ci/run installs it, so CI never skips
    unavailable(f"{CHROMIUM} is missing: apt-get install chromium", module_level=True)

Browser = Any  # playwright.async_api.Browser
Page = Any  # playwright.async_api.Page


@dataclasses.dataclass
class Instance:
    """StateRelay served on 127.0.0.1 with its public URL pointing at itself."""

    app: web.Application
    url: str

    @property
    def core(self) -> Core:
        """The running app's core."""
        return self.app[CORE_KEY]

    async def principal(self) -> Principal:
        """The signed-up admin, as core sees them."""
        user = await self.core.users.by_email(EMAIL)
        return Principal(user.tenant_id, user.id, frozenset({"read", "write"}), "session", "t")


@pytest.fixture
async def instance(
    settings: Settings,
    aiohttp_server: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> Instance:
    """A fresh instance (no account yet) on a free port; the setup link is in the log."""
    caplog.set_level(logging.INFO, logger="staterelay.ui")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(
        dataclasses.replace(settings, server=dataclasses.replace(settings.server, public_url=url))
    )
    server: TestServer = await aiohttp_server(app, port=port)
    assert server.port == port
    return Instance(app=app, url=url)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, closed after the test."""
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def set_up(page: Page, instance: Instance, caplog: pytest.LogCaptureFixture) -> None:
    """Create the admin through the one-time setup link, as a new owner would."""
    started = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    ((link, _),) = setup_links(started)  # logged when the instance fixture started the app
    assert link.startswith(instance.url)
    await page.goto(link)
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Type it again").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url(f"{instance.url}/dashboard")


async def sign_in(page: Page, instance: Instance) -> None:
    """Sign in through the form."""
    await page.goto(f"{instance.url}/login")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{instance.url}/dashboard")


async def nav(page: Page, name: str) -> None:
    """Follow a link of the main navigation."""
    await page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


async def live(page: Page) -> None:
    """Wait until the page's live connection is up."""
    await page.wait_for_selector("[data-live-status][data-state=live]", state="attached")


async def api_put(instance: Instance, key: str, device_id: str, state: dict[str, Any]) -> None:
    """Change a device through the REST API, as a script would."""
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{instance.url}/api/v1/devices/{device_id}/state",
            json=state,
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def api_status(instance: Instance, key: str) -> int:
    """The status of an authenticated API read."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{instance.url}/api/v1/devices", headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        return response.status


async def test_the_whole_product_in_a_browser(
    instance: Instance, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """Set up, create a switch, flip it, see an API change live, read the log, make and
    revoke an API key, delete the switch."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await set_up(page, instance, caplog)

    await page.get_by_role("link", name="New device").click()
    await page.get_by_label("Name", exact=True).fill("Movie mode")
    await page.get_by_role("button", name="Create device").click()
    await page.wait_for_url(f"{instance.url}/dashboard/devices/dev_*?done=created")
    device_id = page.url.split("/dashboard/devices/")[1].split("?")[0]

    await nav(page, "Dashboard")
    await live(page)
    toggle = page.get_by_role("switch", name="Movie mode: power")
    assert await toggle.get_attribute("aria-checked") == "false"
    await toggle.click()
    await playwright_api.expect(toggle).to_have_attribute("aria-checked", "true")
    principal = await instance.principal()
    device = await instance.core.devices.get(principal, device_id)
    assert device.properties["power"].value == "ON"

    _, key = await instance.core.auth.create_key_for(principal, name="script", scope="write")
    started = time.monotonic()
    await api_put(instance, key, device_id, {"power": "OFF"})
    await playwright_api.expect(toggle).to_have_attribute("aria-checked", "false", timeout=1000)
    assert time.monotonic() - started < 1.0
    card = page.locator(f'[data-device="{device_id}"]')
    await playwright_api.expect(card.locator('[data-field="state"]')).to_have_text("Off")

    await nav(page, "Activity")
    log = page.locator("[data-activity-list]")
    await playwright_api.expect(log.locator(".activity-item").nth(0)).to_contain_text("Turned off")
    await playwright_api.expect(log).to_contain_text("API")
    await playwright_api.expect(log.locator(".activity-item").nth(1)).to_contain_text("Turned on")
    await playwright_api.expect(log.locator(".activity-item").nth(1)).to_contain_text("Dashboard")

    await nav(page, "Settings")
    await page.get_by_label("Key name").fill("laptop")
    await page.get_by_role("button", name="Create key").click()
    secret = await page.locator("#new-key").input_value()
    assert secret.startswith("sr_")
    assert await api_status(instance, secret) == 200
    await page.get_by_role("button", name="Revoke the key laptop").click()
    await playwright_api.expect(page.locator("[role=status]")).to_contain_text("was revoked")
    assert await api_status(instance, secret) == 401

    await page.goto(f"{instance.url}/dashboard/devices/{device_id}")
    await page.get_by_role("link", name="Delete…").click()
    await page.get_by_role("button", name="Delete device").click()
    await page.wait_for_url(f"{instance.url}/dashboard/devices?done=deleted")
    await playwright_api.expect(page.locator("[data-device-table] tbody tr")).to_have_count(0)
    assert errors == []


async def test_a_phone_sized_screen(
    instance: Instance, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """390 x 844: nothing scrolls sideways, the tab bar is in reach, a tap flips a switch."""
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await set_up(page, instance, caplog)
    principal = await instance.principal()
    lamp = await instance.core.devices.create(
        principal, type="dimmer", name="Living room lamp", source="ui"
    )
    await page.reload()
    await live(page)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    tab_bar = page.get_by_role("navigation", name="Main")
    box = await tab_bar.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] == pytest.approx(PHONE["height"], abs=1)
    toggle = page.get_by_role("switch", name="Living room lamp: power")
    await toggle.tap()
    await playwright_api.expect(toggle).to_have_attribute("aria-checked", "true")
    await page.locator(f"#brightness-{lamp.id}").fill("30")
    await playwright_api.expect(
        page.locator(f'[data-device="{lamp.id}"] [data-field="state"]')
    ).to_have_text("On · 30 %")
    device = await instance.core.devices.get(principal, lamp.id)
    assert {k: p.value for k, p in device.properties.items()} == {"power": "ON", "brightness": 30}
    for path in (
        "/dashboard/devices",
        "/dashboard/activity",
        "/dashboard/integrations",
        "/dashboard/settings",
    ):
        await page.goto(instance.url + path)
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
    await context.close()


async def test_a_switch_flipped_with_the_keyboard_alone(
    instance: Instance, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """Tab to the switch, Space turns it on, Enter turns it off; the focus ring shows."""
    page = await browser.new_page()
    await set_up(page, instance, caplog)
    principal = await instance.principal()
    await instance.core.devices.create(principal, type="switch", name="Porch light", source="ui")
    await page.reload()
    await live(page)
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.getAttribute('role')") == "switch":
            break
    else:
        pytest.fail("the switch cannot be reached with Tab")
    toggle = page.get_by_role("switch", name="Porch light: power")
    await playwright_api.expect(toggle).to_be_focused()
    outline = await toggle.evaluate("node => getComputedStyle(node).outlineStyle")
    assert outline == "solid"
    await page.keyboard.press("Space")
    # Generous waits: each press is a durable write, and CI machines can be busy.
    await playwright_api.expect(toggle).to_have_attribute("aria-checked", "true", timeout=15000)
    await page.keyboard.press("Enter")
    await playwright_api.expect(toggle).to_have_attribute("aria-checked", "false", timeout=15000)
    await playwright_api.expect(toggle).to_be_focused()
    (entry, *_) = (await instance.core.activity.list(principal)).items
    assert (entry.kind, entry.new_value, entry.source) == ("state", "OFF", "ui")


async def test_a_dropped_connection_reconnects_and_resyncs(
    instance: Instance, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """Changes made while the socket was down show once it is back, without a reload."""
    page = await browser.new_page()
    await set_up(page, instance, caplog)
    principal = await instance.principal()
    lamp = await instance.core.devices.create(principal, type="switch", name="Lamp", source="ui")
    await page.reload()
    await live(page)
    await instance.app[LIVE_KEY].disconnect_all(1012, b"restarting")
    status = page.locator("[data-live-status]")
    await playwright_api.expect(status).to_have_attribute("data-state", "down")
    await instance.core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await live(page)
    toggle = page.get_by_role("switch", name="Lamp: power")
    await playwright_api.expect(toggle).to_have_attribute("aria-checked", "true")
    bell = await instance.core.devices.create(principal, type="button", name="Bell", source="api")
    await playwright_api.expect(page.locator(f'[data-device="{bell.id}"]')).to_be_visible()
    await instance.core.devices.delete(principal, bell.id, source="api")
    await playwright_api.expect(page.locator(f'[data-device="{bell.id}"]')).to_have_count(0)


def test_chromium_is_the_debian_build() -> None:
    """The tests drive the distribution's browser, not a downloaded one."""
    assert shutil.which("chromium") == CHROMIUM
