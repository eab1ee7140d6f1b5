"""A newcomer's first hour in a real browser: the dashboard opened at another address than
the public URL (as on a Pi), two browsers at once, the slider driven by the keyboard, rooms
on a phone, and the guided set-up pages on a phone and a desktop."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core.records import Principal
from staterelay.settings import Settings
from tests.processes import free_port
from tests.ui.test_browser import (  # noqa: F401 - the browser fixture
    EMAIL,
    PHONE,
    Browser,
    Page,
    browser,
    live,
    playwright_api,
)
from tests.web.support import PASSWORD, setup_links

expect = playwright_api.expect


@dataclasses.dataclass
class LanInstance:
    """StateRelay listening on 127.0.0.2 while its public URL says localhost."""

    app: web.Application
    url: str  # what the browsers open: not the public URL

    async def principal(self) -> Principal:
        """The admin the setup link made."""
        user = await self.app[CORE_KEY].users.by_email(EMAIL)
        return Principal(user.tenant_id, user.id, frozenset({"read", "write"}), "session", "t")


@pytest.fixture
async def lan(
    settings: Settings, aiohttp_server: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> LanInstance:
    """Served on 127.0.0.2 with the default public URL http://localhost:<port>."""
    caplog.set_level(logging.INFO, logger="staterelay.ui")
    port = free_port()
    server_settings = dataclasses.replace(
        settings.server, host="127.0.0.2", port=port, public_url=f"http://localhost:{port}"
    )
    app = create_app(dataclasses.replace(settings, server=server_settings))
    server: TestServer = await aiohttp_server(app, host="127.0.0.2", port=port)
    return LanInstance(app=app, url=f"http://127.0.0.2:{server.port}")


async def set_up_at(page: Page, lan: LanInstance, caplog: pytest.LogCaptureFixture) -> None:
    """Open the logged setup link at the LAN address and make the admin."""
    started = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    ((link, token),) = setup_links(started)  # logged when the fixture started the app
    assert link.startswith("http://localhost:")
    await page.goto(f"{lan.url}/setup?token={token}")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Type it again").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url(f"{lan.url}/dashboard")


async def sign_in_at(page: Page, lan: LanInstance) -> None:
    """Sign in through the form at the LAN address."""
    await page.goto(f"{lan.url}/login")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{lan.url}/dashboard")


async def test_the_dashboard_works_from_another_address(
    lan: LanInstance,
    browser: Browser,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At 127.0.0.2 (public URL localhost): toggles, the slider and live updates work, in
    two browsers at once, and the same step twice."""
    desk = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await desk.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await set_up_at(page, lan, caplog)
    core = lan.app[CORE_KEY]
    me = await lan.principal()
    porch = await core.devices.create(me, type="switch", name="Porch", source="ui")
    lamp = await core.devices.create(me, type="dimmer", name="Desk lamp", source="ui")
    await page.reload()
    await live(page)

    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    other = await phone.new_page()
    await sign_in_at(other, lan)
    await live(other)

    toggle = page.get_by_role("switch", name="Porch: power")
    mirrored = other.get_by_role("switch", name="Porch: power")
    for wanted in ("true", "false", "true"):  # the same step twice, and back
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-checked", wanted)
        await expect(mirrored).to_have_attribute("aria-checked", wanted)
    assert (await core.devices.get(me, porch.id)).properties["power"].value == "ON"
    await expect(page.locator(f'[data-device="{porch.id}"] [data-error-for="form"]')).to_be_hidden()

    await page.locator(f"#brightness-{lamp.id}").fill("30")
    await expect(other.locator(f'[data-device="{lamp.id}"] [data-field="state"]')).to_have_text(
        "On · 30 %"
    )
    assert (await core.devices.get(me, lamp.id)).properties["brightness"].value == 30

    await core.devices.set_state(me, porch.id, {"power": "OFF"}, source="api")
    await expect(toggle).to_have_attribute("aria-checked", "false")
    await expect(mirrored).to_have_attribute("aria-checked", "false")
    assert errors == []
    await desk.close()
    await phone.close()


async def test_ten_quick_arrow_keys_move_the_slider_ten_steps(
    lan: LanInstance,
    browser: Browser,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """43 and ten ArrowRight presses as fast as they come: 53 on the slider and the server,
    none lost to the echoes of the first steps."""
    page = await browser.new_page()
    await set_up_at(page, lan, caplog)
    core = lan.app[CORE_KEY]
    me = await lan.principal()
    lamp = await core.devices.create(me, type="dimmer", name="Desk lamp", source="ui")
    await core.devices.set_state(me, lamp.id, {"power": "ON", "brightness": 43}, source="api")
    await page.reload()
    await live(page)
    slider = page.locator(f"#brightness-{lamp.id}")
    await slider.focus()
    for _ in range(10):
        await page.keyboard.press("ArrowRight")
    card = page.locator(f'[data-device="{lamp.id}"]')
    await expect(card.locator('[data-field="state"]')).to_have_text("On · 53 %", timeout=15000)
    await expect(slider).to_have_value("53")
    await expect(card.locator("output")).to_have_text("53 %")
    assert (await core.devices.get(me, lamp.id)).properties["brightness"].value == 53
    for _ in range(3):
        await page.keyboard.press("ArrowLeft")
    await expect(card.locator('[data-field="state"]')).to_have_text("On · 50 %", timeout=15000)
    await expect(slider).to_have_value("50")


async def test_rooms_on_a_phone(
    lan: LanInstance,
    browser: Browser,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cards grouped by room; two sensors side by side on a phone; a room given on the
    device page moves the card to its group live; the room field suggests the household's."""
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await set_up_at(page, lan, caplog)
    core = lan.app[CORE_KEY]
    me = await lan.principal()
    await core.devices.create(me, type="switch", name="Fan", room="Kitchen", source="ui")
    door = await core.devices.create(
        me, type="contact_sensor", name="Back door", room="Kitchen", source="ui"
    )
    motion = await core.devices.create(
        me, type="motion_sensor", name="Kitchen motion", room="kitchen", source="ui"
    )
    loose = await core.devices.create(me, type="temperature_sensor", name="Shed", source="ui")
    await page.reload()
    await live(page)
    groups = page.locator("[data-room-group]")
    await expect(groups).to_have_count(2)
    await expect(groups.nth(0).locator(".room-title")).to_have_text("Kitchen")
    await expect(groups.nth(1).locator(".room-title")).to_have_text("No room")
    first = await page.locator(f'[data-device="{door.id}"]').bounding_box()
    second = await page.locator(f'[data-device="{motion.id}"]').bounding_box()
    assert first is not None
    assert second is not None
    assert abs(first["y"] - second["y"]) < 1  # one row
    assert second["x"] > first["x"] + first["width"] - 1  # side by side
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    await core.devices.update(me, loose.id, fields={"room": "Garden"}, source="api")
    garden = page.locator('[data-room-group="Garden"]')
    await expect(garden.locator(f'[data-device="{loose.id}"]')).to_be_visible()
    await expect(page.locator('[data-room-group=""]')).to_have_count(0)

    await page.goto(f"{lan.url}/dashboard/devices/new")
    options = page.locator("#room-choices option")
    values = [await options.nth(i).get_attribute("value") for i in range(await options.count())]
    assert values[:2] == ["Garden", "Kitchen"]
    assert "Living room" in values
    await context.close()


async def test_the_guided_pages_on_a_phone_and_a_desktop(
    lan: LanInstance,
    browser: Browser,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Numbered steps, each value in a field with a working copy button, nothing wider
    than a phone; the vendor id registers the client and ticks step 4."""
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await phone.new_page()
    await set_up_at(page, lan, caplog)
    for path in ("alexa", "ifttt", "webhooks"):
        await page.goto(f"{lan.url}/dashboard/integrations/{path}")
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        assert await page.locator(".guide-step").count() >= 4
    await page.goto(f"{lan.url}/dashboard/integrations/alexa")
    await expect(page.locator(".guide-step")).to_have_count(10)
    await page.get_by_label("Vendor id").fill("M2ABCDEF")
    await page.get_by_role("button", name="Register the skill's client").click()
    skill = page.locator("#step-skill")
    await expect(skill).to_have_attribute("data-done", "yes")
    linking = page.locator("#step-linking")
    client_id = await linking.get_by_label("Your Client ID").input_value()
    assert client_id.startswith("alexa-")
    secret = await linking.get_by_label("Your Secret").input_value()
    assert len(secret) > 20
    copy = linking.locator("button.copy-button").first
    await expect(copy).to_have_accessible_name("Copy Your Web Authorization URI")
    await copy.click()
    await expect(copy).to_have_text("Copied")
    await phone.close()

    desk = await browser.new_page(viewport={"width": 1280, "height": 900})
    await sign_in_at(desk, lan)
    await desk.goto(f"{lan.url}/dashboard/integrations/alexa")
    assert await desk.locator("#step-skill").get_attribute("data-done") == "yes"
    assert "(shown only now)" not in await desk.content()


async def test_a_refused_toggle_shows_the_servers_reason(
    lan: LanInstance,
    browser: Browser,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A form the server refuses (here: its CSRF token went stale) says why on the card,
    instead of a generic "That did not work"."""
    page = await browser.new_page()
    await set_up_at(page, lan, caplog)
    me = await lan.principal()
    porch = await lan.app[CORE_KEY].devices.create(me, type="switch", name="Porch", source="ui")
    await page.reload()
    await live(page)
    card = page.locator(f'[data-device="{porch.id}"]')
    await card.locator('input[name="csrf_token"]').evaluate("input => { input.value = 'stale'; }")
    await card.get_by_role("switch", name="Porch: power").click()
    error = card.locator('[data-error-for="form"]')
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("The form was not sent from this page")
    assert (await lan.app[CORE_KEY].devices.get(me, porch.id)).properties["power"].value == "OFF"
