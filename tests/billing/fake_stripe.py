"""A fake Stripe on 127.0.0.1: Stripe's own example objects, changed as a test needs.

It answers the few endpoints billing calls with objects built from
``../shared/conformance/stripe/fixtures.json`` (``STRIPE_FIXTURES`` may name the file), keeps
customers, Checkout Sessions and subscriptions in memory, and records every request (method,
path, form or query, and the headers that matter). ``signed`` makes an event body and its
``Stripe-Signature`` header with Stripe's real scheme.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

WEBHOOK_SECRET = "whsec_test_billing_secret"
SECRET_KEY = "sk_test_fake_key"
PRO_LOOKUP = "staterelay_pro_monthly"


def fixtures_path() -> Path:
    """The shared fixtures file (``STRIPE_FIXTURES`` overrides the place)."""
    named = os.environ.get("STRIPE_FIXTURES")
    if named:
        return Path(named)
    root = Path(__file__).resolve().parents[2]
    return root.parent / "shared" / "conformance" / "stripe" / "fixtures.json"


@cache
def _resources() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixtures_path().read_text(encoding="utf-8"))
    return data["resources"]


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of one of Stripe's example objects."""
    return copy.deepcopy(_resources()[name])


def signature_header(payload: str, secret: str, timestamp: int) -> str:
    """``t=...,v1=...``: HMAC-SHA256 of ``"{t}.{payload}"`` keyed with the endpoint secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def signed(
    event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, str]:
    """An event's body and its Stripe-Signature header."""
    payload = json.dumps(event)
    when = int(time.time()) if timestamp is None else timestamp
    return payload.encode(), signature_header(payload, secret, when)


@dataclass
class Recorded:
    """One request the fake answered."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    """The fake's state: what exists, what was asked, and faults to inject."""

    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    fail_next: int = 0
    url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        """A fresh Stripe-looking id."""
        return f"{prefix}_test{next(self._ids):06d}"

    # arranging ---------------------------------------------------------------------------------
    def add_price(self, lookup_key: str, *, recurring: bool = True) -> dict[str, Any]:
        """A price with this lookup key (recurring monthly unless told otherwise)."""
        price = fixture("price")
        price["id"] = self.new_id("price")
        price["lookup_key"] = lookup_key
        if not recurring:
            price["recurring"] = None
            price["type"] = "one_time"
        self.prices[lookup_key] = price
        return price

    def subscribe(
        self,
        customer_id: str,
        lookup_key: str,
        *,
        status: str = "active",
        cancel_at_period_end: bool = False,
        period_end: int | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        """A subscription of the customer to the price with ``lookup_key``."""
        subscription = fixture("subscription")
        subscription_id = self.new_id("sub")
        subscription.update(
            id=subscription_id,
            customer=customer_id,
            status=status,
            cancel_at_period_end=cancel_at_period_end,
            created=created if created is not None else int(time.time()) + next(self._ids),
        )
        item = subscription["items"]["data"][0]
        item["subscription"] = subscription_id
        item["price"] = copy.deepcopy(self.prices[lookup_key])
        item["current_period_end"] = period_end or int(time.time()) + 30 * 86400
        self.subscriptions[subscription_id] = subscription
        return subscription

    def update(self, subscription_id: str, **fields: Any) -> dict[str, Any]:
        """Change a subscription as Stripe would (status, cancel_at_period_end, ...)."""
        subscription = self.subscriptions[subscription_id]
        subscription.update(fields)
        return subscription

    def complete(self, session_id: str) -> dict[str, Any]:
        """The customer paid in Checkout: the session completes, the subscription exists."""
        session = self.sessions[session_id]
        price_id = session["line_items_price"]
        lookup = next(k for k, p in self.prices.items() if p["id"] == price_id)
        subscription = self.subscribe(session["customer"], lookup)
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        return subscription

    def event(
        self, event_type: str, obj: dict[str, Any], *, event_id: str | None = None
    ) -> dict[str, Any]:
        """A webhook event (Stripe's example event with this type and object)."""
        event = fixture("event")
        event.update(
            id=event_id or self.new_id("evt"),
            type=event_type,
            created=int(time.time()),
            api_version="2026-10-28.endive",
            data={"object": copy.deepcopy(obj)},
        )
        return event

    def made(self, method: str, path: str) -> list[Recorded]:
        """The recorded requests to one endpoint."""
        return [r for r in self.requests if r.method == method and r.path == path]

    # the server --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application of the fake."""
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/v1/customers", self._create_customer)
        app.router.add_get("/v1/prices", self._list_prices)
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self._get_session)
        app.router.add_post("/v1/billing_portal/sessions", self._create_portal)
        app.router.add_get("/v1/subscriptions", self._list_subscriptions)
        app.router.add_delete("/v1/subscriptions/{id}", self._cancel_subscription)
        app.router.add_get("/pay/{id}", self._pay_page)
        app.router.add_post("/pay/{id}", self._pay)
        return app

    async def _pay_page(self, request: web.Request) -> web.Response:
        """Checkout as a browser sees it: one button."""
        session_id = request.match_info["id"]
        html = (
            "<!doctype html><title>Fake Checkout</title>"
            f'<form method="post" action="/pay/{session_id}"><button>Pay</button></form>'
        )
        return web.Response(text=html, content_type="text/html")

    async def _pay(self, request: web.Request) -> web.Response:
        """The customer paid: back to the success URL, as Stripe sends them."""
        session_id = request.match_info["id"]
        self.complete(session_id)
        target = self.sessions[session_id]["success_url"].replace(
            "{CHECKOUT_SESSION_ID}", session_id
        )
        raise web.HTTPSeeOther(location=target)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                params=params,
                headers={
                    name: request.headers.get(name, "")
                    for name in ("Authorization", "Stripe-Version", "Idempotency-Key")
                },
            )
        )
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response(
                {"error": {"type": "api_error", "message": "injected failure"}}, status=500
            )
        return await handler(request)

    async def _create_customer(self, request: web.Request) -> web.Response:
        form = await request.post()
        customer = fixture("customer")
        customer.update(id=self.new_id("cus"), email=form.get("email"))
        customer["metadata"] = {"tenant_id": form.get("metadata[tenant_id]")}
        self.customers[customer["id"]] = customer
        return web.json_response(customer)

    async def _list_prices(self, request: web.Request) -> web.Response:
        keys = request.query.getall("lookup_keys[0]", [])
        found = [self.prices[k] for k in keys if k in self.prices and self.prices[k]["active"]]
        return web.json_response(
            {"object": "list", "data": found, "has_more": False, "url": "/v1/prices"}
        )

    async def _create_session(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = fixture("checkout.session")
        session_id = self.new_id("cs")
        session.update(
            id=session_id,
            mode=form.get("mode"),
            customer=form.get("customer"),
            client_reference_id=form.get("client_reference_id"),
            success_url=form.get("success_url"),
            cancel_url=form.get("cancel_url"),
            status="open",
            payment_status="unpaid",
            url=f"{self.url}/pay/{session_id}",
        )
        session["line_items_price"] = form.get("line_items[0][price]")
        self.sessions[session_id] = session
        return web.json_response(session)

    async def _get_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "No such session"}},
                status=404,
            )
        return web.json_response(session)

    async def _create_portal(self, request: web.Request) -> web.Response:
        form = await request.post()
        portal = fixture("billing_portal.session")
        portal.update(
            id=self.new_id("bps"),
            customer=form.get("customer"),
            return_url=form.get("return_url"),
            url=f"{self.url}/portal/{form.get('customer')}",
        )
        return web.json_response(portal)

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        customer = request.query.get("customer")
        found = [s for s in self.subscriptions.values() if s["customer"] == customer]
        found.sort(key=lambda s: s["created"], reverse=True)
        return web.json_response(
            {"object": "list", "data": found, "has_more": False, "url": "/v1/subscriptions"}
        )

    async def _cancel_subscription(self, request: web.Request) -> web.Response:
        subscription = self.subscriptions[request.match_info["id"]]
        subscription["status"] = "canceled"
        return web.json_response(subscription)


async def start_fake_stripe() -> tuple[FakeStripe, TestServer]:
    """The fake, serving on 127.0.0.1 (close the server when done)."""
    fake = FakeStripe()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    return fake, server
