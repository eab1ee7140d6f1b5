"""``POST /billing/stripe/webhook``: Stripe's events, the truth about subscriptions.

The signature is checked by the ``stripe`` library (300 s tolerance; any of several ``v1``
signatures, for secret rotation) before anything else; a bad or missing one is 400 and
changes nothing. An event names a customer; the household is looked up in StateRelay's own
table (never taken from the event). Each event id is processed once. The subscription is
re-read from Stripe before anything changes, so the order events arrive in does not matter,
and the plan and status change in one transaction with an activity entry. A failure to reach
Stripe or the database answers 503, so Stripe retries.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Final

import stripe
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from staterelay.app.problems import problem_response
from staterelay.core import Core
from staterelay.core.errors import BadRequest, StateRelayError, Unavailable
from staterelay.integrations.billing.stripe_api import HANDLED_EVENTS, StripeApi
from staterelay.settings import BillingSettings

_LOGGER = logging.getLogger(__name__)

WEBHOOK_PATH: Final = "/billing/stripe/webhook"
OTHER_TYPE: Final = "other"
OUTCOMES: Final = ("processed", "duplicate", "ignored", "rejected", "failed")


class WebhookOutcomes(Collector):
    """``billing_webhook_events_total{type,outcome}``, every pair present from 0."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def count(self, event_type: str, outcome: str) -> None:
        """Count one event (types outside the handled ones as ``other``)."""
        kind = event_type if event_type in HANDLED_EVENTS else OTHER_TYPE
        self.counts[kind, outcome] += 1

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the family is made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The family, one sample per type and outcome."""
        family = CounterMetricFamily(
            "billing_webhook_events",
            "Stripe webhook events received, by type and outcome.",
            labels=("type", "outcome"),
        )
        for kind in (*HANDLED_EVENTS, OTHER_TYPE):
            for outcome in OUTCOMES:
                family.add_metric((kind, outcome), self.counts[kind, outcome])
        yield family


def _customer_of(event: Any) -> str | None:
    """The customer id an event's object names (a string, or an expanded customer)."""
    obj = event["data"]["object"]
    try:
        customer = obj["customer"]
    except (KeyError, TypeError):
        return None
    if isinstance(customer, str):
        return customer
    try:
        return str(customer["id"])
    except (KeyError, TypeError):
        return None


class StripeWebhook:
    """The webhook handler, with what it needs."""

    def __init__(
        self, core: Core, settings: BillingSettings, api: StripeApi, outcomes: WebhookOutcomes
    ) -> None:
        self._core = core
        self._secret = settings.stripe_webhook_secret
        self._api = api
        self._outcomes = outcomes

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, deduplicate, re-read, apply; 2xx once the event is taken care of."""
        payload = await request.read()
        signature = request.headers.get("Stripe-Signature")
        if self._secret is None:
            self._outcomes.count(OTHER_TYPE, "failed")
            return problem_response(Unavailable("the Stripe webhook secret is not configured"))
        if not signature:
            self._outcomes.count(OTHER_TYPE, "rejected")
            return problem_response(BadRequest("the Stripe-Signature header is missing"))
        try:
            event = self._api.construct_event(payload, signature, self._secret)
        except (stripe.SignatureVerificationError, ValueError):
            self._outcomes.count(OTHER_TYPE, "rejected")
            return problem_response(BadRequest("the Stripe signature does not verify"))
        event_type = str(event["type"])
        event_id = str(event["id"])
        try:
            outcome = await self._process(event, event_type, event_id)
        except (stripe.StripeError, StateRelayError, OSError) as exc:
            _LOGGER.warning(
                "Stripe event %s (%s) failed, Stripe retries: %s", event_id, event_type, exc
            )
            self._outcomes.count(event_type, "failed")
            return problem_response(
                Unavailable("the event could not be processed now; Stripe will retry")
            )
        self._outcomes.count(event_type, outcome)
        _LOGGER.info("Stripe event %s (%s): %s", event_id, event_type, outcome)
        return web.json_response({"received": True, "outcome": outcome})

    async def _process(self, event: Any, event_type: str, event_id: str) -> str:
        if event_type not in HANDLED_EVENTS:
            return "ignored"
        customer_id = _customer_of(event)
        if customer_id is None:
            return "ignored"
        billing = self._core.billing
        tenant_id = await billing.tenant_for_customer(customer_id)
        if tenant_id is None:
            return "ignored"
        if await billing.event_seen(tenant_id, event_id):
            return "duplicate"
        facts = await self._api.subscription_of(customer_id)
        applied = await billing.apply(tenant_id, facts, event_id=event_id)
        return "processed" if applied else "duplicate"
