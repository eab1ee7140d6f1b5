"""Fixtures of the billing tests: a fake Stripe, settings with billing on, households."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from staterelay.settings import (
    FREE_PLAN,
    BillingSettings,
    PlanLimits,
    PlanSettings,
    Settings,
)
from tests.billing.fake_stripe import (
    PRO_LOOKUP,
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    start_fake_stripe,
)
from tests.ui.homes import Home, sign_in_home
from tests.web.support import Browser, FakeClock, browse, build_app, clock

__all__ = ["browse", "clock"]

FREE = dataclasses.replace(
    FREE_PLAN, limits=PlanLimits(devices=3, webhooks=1, api_per_minute=60, retention_days=7)
)
PRO = PlanSettings(
    key="pro",
    name="Pro",
    lookup_key=PRO_LOOKUP,
    limits=PlanLimits(devices=10, webhooks=5, api_per_minute=600, retention_days=90),
)


def billing_settings(base: Settings, stripe_url: str, **changes: object) -> Settings:
    """``base`` with billing on, reaching the fake Stripe."""
    billing = BillingSettings(
        enabled=True,
        stripe_api_base=stripe_url,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        plans=(FREE, PRO),
    )
    return dataclasses.replace(base, billing=dataclasses.replace(billing, **changes))


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    """A fake Stripe on 127.0.0.1 with the Pro price."""
    fake, server = await start_fake_stripe()
    fake.add_price(PRO_LOOKUP)
    try:
        yield fake
    finally:
        await server.close()


@pytest.fixture
def hosted(settings: Settings, stripe_fake: FakeStripe) -> Settings:
    """Settings with billing on."""
    return billing_settings(settings, stripe_fake.url)


@pytest.fixture
def hosted_app(hosted: Settings, clock: FakeClock) -> web.Application:
    """The application with billing on, on the test clock."""
    return build_app(hosted, clock)


HomeFactory = Callable[..., Awaitable[Home]]


@pytest.fixture
def household(
    hosted_app: web.Application, browse: Callable[[web.Application], Awaitable[Browser]]
) -> HomeFactory:
    """A new household (its own tenant) with a signed-in admin (or member)."""

    async def make(email: str, *, is_admin: bool = True) -> Home:
        return await sign_in_home(browse, hosted_app, email, own_tenant=True, is_admin=is_admin)

    return make


@pytest.fixture
def data_path(tmp_path: Path) -> Path:
    """A scratch directory."""
    return tmp_path
