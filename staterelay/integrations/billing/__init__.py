"""Hosted billing with Stripe: plans, subscriptions, the Stripe webhook, the Billing page.

``Billing`` is always registered and builds nothing while ``billing.enabled`` is false, so
a self-hosted instance has no billing routes (404), no limits and no Billing tab. When it is
on: ``POST /billing/stripe/webhook`` on the API host (problem+json errors, no rate limit:
Stripe calls from a few addresses), the Billing page and its actions on the dashboard, the
usage flush (every few seconds and at shutdown) and ``billing_webhook_events_total``. The
rules (plans, limits, suspensions, usage) are core's (``staterelay.core.billing``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

from aiohttp import web

from staterelay.app.integration import (
    Integration,
    IntegrationContext,
    Parts,
    PeriodicTask,
    RateLimit,
    SettingsSection,
    Surface,
)
from staterelay.integrations.billing import dashboard
from staterelay.integrations.billing.stripe_api import StripeApi
from staterelay.integrations.billing.webhook import WEBHOOK_PATH, StripeWebhook, WebhookOutcomes
from staterelay.ops.checks import Check
from staterelay.settings import Settings

USAGE_FLUSH_SECONDS: Final = 5.0
"""How often usage counts go to the database; a crash loses at most this long's counts."""
RETENTION_SECONDS: Final = 3600.0
"""How often activity older than each household's plan keeps is deleted."""


class Billing(Integration):
    """Stripe billing for hosted instances."""

    name = "billing"
    section = SettingsSection(
        name="billing",
        title="Billing",
        read=lambda settings: settings.billing,
        required=("stripe_secret_key", "stripe_webhook_secret"),
    )
    surfaces = (Surface(path="/billing/", roles=("api",), limit=RateLimit.NONE),)

    def doctor_checks(self, settings: Settings) -> Sequence[Check]:
        """The keys look like Stripe's, and some plan is for sale."""
        billing = settings.billing
        if not billing.enabled:
            return ()
        checks: list[Check] = []
        key = billing.stripe_secret_key or ""
        if key and not key.startswith(("sk_", "rk_")):
            checks.append(
                Check("billing key", "FAIL", "billing.stripe_secret_key must start with sk_ or rk_")
            )
        secret = billing.stripe_webhook_secret or ""
        if secret and not secret.startswith("whsec_"):
            checks.append(
                Check(
                    "billing webhook",
                    "FAIL",
                    "billing.stripe_webhook_secret must start with whsec_",
                )
            )
        paid = [plan.key for plan in billing.plans if plan.lookup_key is not None]
        if paid:
            checks.append(
                Check(
                    "billing plans",
                    "OK",
                    f"paid plans: {', '.join(paid)} (check their prices: "
                    "staterelay billing plans --check)",
                )
            )
        else:
            checks.append(
                Check("billing plans", "WARN", "billing.plans has no paid plan to upgrade to")
            )
        return checks

    def build(self, context: IntegrationContext) -> Parts:
        """Nothing while billing is off; else the webhook, the page, the usage flush."""
        core, settings = context.core, context.settings
        if not settings.billing.enabled:
            return Parts()
        api = StripeApi(
            secret_key=settings.billing.stripe_secret_key,
            api_base=settings.billing.stripe_api_base,
            session=context.http.shared,
        )
        outcomes = WebhookOutcomes()
        webhook = StripeWebhook(core, settings.billing, api, outcomes)

        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            try:
                yield
            finally:
                await core.usage.flush()

        return Parts(
            routes=(*dashboard.routes, web.post(WEBHOOK_PATH, webhook.handle)),
            periodic=(PeriodicTask("billing-usage", USAGE_FLUSH_SECONDS, core.usage.flush, True),),
            collectors=(outcomes,),
            running=running,
            keys={dashboard.STRIPE_API_KEY: api},
        )


__all__ = ["Billing", "StripeApi"]
