"""Stripe, through the ``stripe`` library's async client on the application's aiohttp session.

Every call is an ``*_async`` method over ``stripe.AIOHTTPClient`` (nothing blocks the event
loop), with the API version the library pins, ``billing.stripe_api_base`` as the base
address (a loopback fake in tests) and two network retries that keep the idempotency key.
Creations carry idempotency keys of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import stripe

from staterelay.core.billing import LIVE_STATUSES, StripeSubscription

API_VERSION: Final = stripe.api_version
"""The Stripe API version every request names (the one the library pins); register the
webhook endpoint with it so events have the shapes parsed here."""
HANDLED_EVENTS: Final = (
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
)
NETWORK_RETRIES: Final = 2
TIMEOUT_SECONDS: Final = 20.0


class StripeNotConfigured(Exception):
    """``billing.stripe_secret_key`` is not set."""


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """A Checkout Session as the success page reads it back."""

    tenant_id: str | None
    customer_id: str | None
    status: str | None
    payment_status: str | None


@dataclass(frozen=True, slots=True)
class PriceCheck:
    """What Stripe has for one plan's lookup key: the price, or what is wrong."""

    plan_key: str
    lookup_key: str
    price_id: str | None
    problem: str | None


def _field(obj: Any, name: str) -> Any:
    """A field of a Stripe object or mapping (``items`` too, which is a dict method)."""
    if obj is None:
        return None
    try:
        return obj[name]
    except (KeyError, TypeError):
        return None


def subscription_facts(customer_id: str, subscriptions: Sequence[Any]) -> StripeSubscription:
    """The customer's subscription that counts: the newest live one, else the newest."""
    if not subscriptions:
        return StripeSubscription(
            customer_id=customer_id,
            subscription_id=None,
            lookup_key=None,
            status="none",
            current_period_end=None,
            cancel_at_period_end=False,
        )
    chosen = max(
        subscriptions,
        key=lambda s: (_field(s, "status") in LIVE_STATUSES, _field(s, "created") or 0),
    )
    items = _field(_field(chosen, "items"), "data") or []
    first = items[0] if items else None
    price = _field(first, "price")
    period_end = _field(first, "current_period_end")
    return StripeSubscription(
        customer_id=customer_id,
        subscription_id=_field(chosen, "id"),
        lookup_key=_field(price, "lookup_key"),
        status=str(_field(chosen, "status") or "none"),
        current_period_end=float(period_end) if period_end is not None else None,
        cancel_at_period_end=bool(_field(chosen, "cancel_at_period_end")),
    )


class StripeApi:
    """The few Stripe calls billing makes."""

    def __init__(
        self,
        *,
        secret_key: str | None,
        api_base: str,
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._secret_key = secret_key
        self._api_base = api_base.rstrip("/")
        self._session = session
        self._client: stripe.StripeClient | None = None
        self._client_session: aiohttp.ClientSession | None = None

    @property
    def client(self) -> stripe.StripeClient:
        """The async client on the current shared session (made again if it was replaced)."""
        if self._secret_key is None:
            raise StripeNotConfigured("billing.stripe_secret_key is not set")
        session = self._session()
        if self._client is None or self._client_session is not session:
            self._client = stripe.StripeClient(
                self._secret_key,
                base_addresses={"api": self._api_base},
                http_client=stripe.AIOHTTPClient(session=session, timeout=TIMEOUT_SECONDS),
                max_network_retries=NETWORK_RETRIES,
                stripe_version=API_VERSION,
            )
            self._client_session = session
        return self._client

    def construct_event(self, payload: bytes, signature: str, secret: str) -> Any:
        """The verified event (``stripe.SignatureVerificationError`` or ``ValueError``)."""
        return stripe.Webhook.construct_event(payload, signature, secret, tolerance=300)

    async def create_customer(self, tenant_id: str, email: str) -> str:
        """A customer for the household (one per household: the key makes a retry reuse it)."""
        customer = await self.client.v1.customers.create_async(
            params={"email": email, "metadata": {"tenant_id": tenant_id}},
            options={"idempotency_key": f"customer:{tenant_id}"},
        )
        return str(customer.id)

    async def price_for(self, lookup_key: str) -> str | None:
        """The id of the active price with this lookup key."""
        prices = await self.client.v1.prices.list_async(
            params={"lookup_keys": [lookup_key], "active": True, "limit": 1}
        )
        return str(prices.data[0].id) if prices.data else None

    async def check_price(self, plan_key: str, lookup_key: str) -> PriceCheck:
        """Whether the lookup key names an active recurring price."""
        prices = await self.client.v1.prices.list_async(
            params={"lookup_keys": [lookup_key], "active": True, "limit": 1}
        )
        if not prices.data:
            return PriceCheck(plan_key, lookup_key, None, "no active price has this lookup key")
        price = prices.data[0]
        if _field(price, "recurring") is None or _field(price, "type") == "one_time":
            return PriceCheck(plan_key, lookup_key, str(price.id), "the price is not recurring")
        return PriceCheck(plan_key, lookup_key, str(price.id), None)

    async def create_checkout(
        self,
        *,
        tenant_id: str,
        customer_id: str,
        price_id: str,
        success_url: str,
        cancel_url: str,
        attempt: str,
    ) -> str:
        """A subscription-mode Checkout Session for the household; returns its URL."""
        session = await self.client.v1.checkout.sessions.create_async(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": tenant_id,
                "line_items": [{"price": price_id, "quantity": 1}],
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": {"tenant_id": tenant_id},
                "subscription_data": {"metadata": {"tenant_id": tenant_id}},
            },
            options={"idempotency_key": f"checkout:{tenant_id}:{attempt}"},
        )
        return str(session.url)

    async def read_checkout(self, session_id: str) -> CheckoutResult:
        """A Checkout Session as Stripe has it (the success page never trusts the browser)."""
        session = await self.client.v1.checkout.sessions.retrieve_async(session_id)
        return CheckoutResult(
            tenant_id=_field(session, "client_reference_id"),
            customer_id=_field(session, "customer"),
            status=_field(session, "status"),
            payment_status=_field(session, "payment_status"),
        )

    async def create_portal(self, customer_id: str, return_url: str) -> str:
        """A Customer Portal session for the customer; returns its URL."""
        portal = await self.client.v1.billing_portal.sessions.create_async(
            params={"customer": customer_id, "return_url": return_url}
        )
        return str(portal.url)

    async def subscription_of(self, customer_id: str) -> StripeSubscription:
        """The customer's subscription as Stripe has it now (re-read, never from an event)."""
        found = await self.client.v1.subscriptions.list_async(
            params={"customer": customer_id, "status": "all", "limit": 10}
        )
        return subscription_facts(customer_id, list(found.data))

    async def cancel_subscription(self, subscription_id: str) -> None:
        """End a subscription now (the household is being deleted)."""
        await self.client.v1.subscriptions.cancel_async(
            subscription_id, options={"idempotency_key": f"cancel:{subscription_id}"}
        )
