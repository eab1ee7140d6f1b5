"""The upgrade in a real browser: Chromium, StateRelay and a fake Stripe, all on loopback.

A free household fills its three devices, is told at the fourth that its plan is full, opens
the Billing page, upgrades, pays in (fake) Checkout, comes back to the success page, the
webhook arrives, and the fourth device can be added.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from staterelay.app.factory import create_app
from staterelay.settings import Settings
from tests.billing.conftest import billing_settings
from tests.billing.fake_stripe import PRO_LOOKUP, FakeStripe, signed, start_fake_stripe
from tests.processes import free_port
from tests.ui.test_browser import Instance, Page, browser, set_up

__all__ = ["browser"]


@pytest.fixture
async def stripe_server() -> AsyncIterator[FakeStripe]:
    """The fake Stripe with the Pro price."""
    fake, server = await start_fake_stripe()
    fake.add_price(PRO_LOOKUP)
    try:
        yield fake
    finally:
        await server.close()


@pytest.fixture
async def hosted_instance(
    settings: Settings,
    stripe_server: FakeStripe,
    aiohttp_server: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> Instance:
    """A fresh hosted instance (billing on) whose public URL is itself."""
    caplog.set_level(logging.INFO, logger="staterelay.ui")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hosted = billing_settings(settings, stripe_server.url)
    app = create_app(
        dataclasses.replace(hosted, server=dataclasses.replace(hosted.server, public_url=url))
    )
    server: TestServer = await aiohttp_server(app, port=port)
    assert server.port == port
    return Instance(app=app, url=url)


async def add_device(page: Page, instance: Instance, name: str) -> None:
    await page.goto(f"{instance.url}/dashboard/devices/new")
    await page.get_by_label("Name").fill(name)
    await page.get_by_role("button", name="Create device").click()


async def test_free_household_upgrades_in_the_browser_and_the_limit_lifts(
    hosted_instance: Instance,
    stripe_server: FakeStripe,
    browser: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = await browser.new_page()
    await set_up(page, hosted_instance, caplog)
    for n in range(3):
        await add_device(page, hosted_instance, f"Lamp {n}")
        await page.wait_for_url(f"{hosted_instance.url}/dashboard/devices/dev_*")

    await add_device(page, hosted_instance, "Porch")
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "The Free plan allows 3 devices" in await alert.inner_text()
    await alert.get_by_role("link", name="See plans and upgrade").click()
    await page.wait_for_url(f"{hosted_instance.url}/dashboard/billing")
    assert await page.locator("#usage-devices").inner_text() == "3"

    await page.locator("#upgrade-pro").click()
    await page.wait_for_url(f"{stripe_server.url}/pay/cs_*")
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(f"{hosted_instance.url}/dashboard/billing?done=subscribed")
    assert await page.locator("#plan-name").inner_text() == "Pro"

    (session,) = stripe_server.sessions.values()
    body, header = signed(stripe_server.event("checkout.session.completed", session))
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{hosted_instance.url}/billing/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": header},
        ) as response,
    ):
        assert response.status == 200

    await add_device(page, hosted_instance, "Porch")
    await page.wait_for_url(f"{hosted_instance.url}/dashboard/devices/dev_*")
    await page.goto(f"{hosted_instance.url}/dashboard/billing")
    assert await page.locator("#usage-devices").inner_text() == "4"
