"""``POST /billing/stripe/webhook``: signed events move households between plans, once each.

Events carry Stripe's real signature header and are verified by the ``stripe`` library; the
subscription is re-read from the fake Stripe, so the event's own object never decides.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any

import pytest

from staterelay.app.factory import create_app
from staterelay.settings import HostsSettings, Settings
from tests.billing.conftest import HomeFactory
from tests.billing.fake_stripe import (
    PRO_LOOKUP,
    WEBHOOK_SECRET,
    FakeStripe,
    signature_header,
    signed,
)
from tests.ui.homes import Home

WEBHOOK = "/billing/stripe/webhook"


async def customer_home(household: HomeFactory, stripe_fake: FakeStripe, email: str) -> Home:
    """A household whose Stripe customer exists (as after its first Checkout)."""
    home = await household(email)
    customer = stripe_fake.new_id("cus")
    await home.core.billing.save_customer(home.user.tenant_id, customer)
    return home


async def post_event(home: Home, body: bytes, header: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    response = await home.browser.client.post(WEBHOOK, data=body, headers=headers)
    text = await response.text()
    return response.status, json.loads(text) if text else {}


async def plan_of(home: Home) -> str:
    return (await home.core.billing.household(home.user.tenant_id, fresh=True)).plan.key


async def the_customer(home: Home) -> str:
    """The household's Stripe customer id."""
    household = await home.core.billing.household(home.user.tenant_id, fresh=True)
    assert household.customer_id is not None
    return household.customer_id


async def test_a_signed_subscription_event_moves_the_household_to_its_plan(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "pay@example.com")
    customer = await the_customer(home)
    subscription = stripe_fake.subscribe(customer, PRO_LOOKUP)
    assert await plan_of(home) == "free"

    body, header = signed(stripe_fake.event("customer.subscription.created", subscription))
    status, answer = await post_event(home, body, header)

    assert status == 200, answer
    assert answer["outcome"] == "processed"
    assert await plan_of(home) == "pro"
    listed = stripe_fake.made("GET", "/v1/subscriptions")
    assert listed, "the subscription is re-read from Stripe"
    assert listed[-1].params["customer"] == customer
    assert listed[-1].headers["Authorization"] == "Bearer sk_test_fake_key"
    assert listed[-1].headers["Stripe-Version"] == "2026-10-28.endive"
    activity = await home.core.activity.list(home.principal, limit=20)
    kinds = [entry.kind for entry in activity.items]
    assert kinds.count("billing.changed") == 1


async def test_the_same_event_twice_has_one_effect(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "twice@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    body, header = signed(stripe_fake.event("customer.subscription.created", subscription))

    first = await post_event(home, body, header)
    reads = len(stripe_fake.made("GET", "/v1/subscriptions"))
    second = await post_event(home, body, header)

    assert first[0] == second[0] == 200
    assert first[1]["outcome"] == "processed"
    assert second[1]["outcome"] == "duplicate"
    assert len(stripe_fake.made("GET", "/v1/subscriptions")) == reads, "no second re-read"
    activity = await home.core.activity.list(home.principal, limit=20)
    assert [e.kind for e in activity.items].count("billing.changed") == 1


async def test_a_replayed_event_with_an_old_timestamp_is_refused(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "replay@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    event = stripe_fake.event("customer.subscription.created", subscription)
    body, header = signed(event, timestamp=int(time.time()) - 301)

    status, answer = await post_event(home, body, header)

    assert status == 400
    assert answer["code"] == "bad_request"
    assert await plan_of(home) == "free"
    assert not stripe_fake.made("GET", "/v1/subscriptions")


async def test_forged_tampered_and_unsigned_events_change_nothing(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "forged@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    event = stripe_fake.event("customer.subscription.created", subscription)
    body, _ = signed(event, secret="whsec_someone_else")
    forged = await post_event(home, body, signed(event, secret="whsec_someone_else")[1])
    good_body, good_header = signed(event)
    tampered = await post_event(home, good_body.replace(b"active", b"activf"), good_header)
    unsigned = await post_event(home, good_body, None)
    garbage = await post_event(home, good_body, "t=abc,v1=zz")

    for status, answer in (forged, tampered, unsigned, garbage):
        assert status == 400, answer
        assert answer["type"] == "https://staterelay.dev/problems/bad_request"
    assert await plan_of(home) == "free"
    assert not stripe_fake.made("GET", "/v1/subscriptions")


async def test_either_secret_verifies_during_a_rotation(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    """Stripe sends one v1 per active secret while a secret rolls; any match is enough."""
    home = await customer_home(household, stripe_fake, "rotate@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    payload = json.dumps(stripe_fake.event("customer.subscription.created", subscription))
    now = int(time.time())
    old = signature_header(payload, "whsec_the_old_one", now)
    new = signature_header(payload, WEBHOOK_SECRET, now)
    header = f"{old},v1={new.split('v1=')[1]}"

    status, answer = await post_event(home, payload.encode(), header)

    assert status == 200, answer
    assert await plan_of(home) == "pro"


async def test_order_does_not_matter_the_current_subscription_decides(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    """A late 'created' event after the 'deleted' one must not bring the plan back."""
    home = await customer_home(household, stripe_fake, "order@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    created = stripe_fake.event("customer.subscription.created", subscription)
    stripe_fake.update(subscription["id"], status="canceled")
    deleted = stripe_fake.event("customer.subscription.deleted", subscription)

    assert (await post_event(home, *signed(deleted)))[0] == 200
    assert await plan_of(home) == "free"
    assert (await post_event(home, *signed(created)))[0] == 200
    assert await plan_of(home) == "free"
    billing = await home.core.billing.household(home.user.tenant_id, fresh=True)
    assert billing.status == "canceled"


async def test_invoice_events_are_followed_through_the_customer(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "invoice@example.com")
    customer = await the_customer(home)
    stripe_fake.subscribe(customer, PRO_LOOKUP)
    invoice = {"id": "in_test1", "object": "invoice", "customer": customer}

    status, answer = await post_event(home, *signed(stripe_fake.event("invoice.paid", invoice)))

    assert (status, answer["outcome"]) == (200, "processed")
    assert await plan_of(home) == "pro"


async def test_other_types_and_unknown_customers_are_acknowledged_and_ignored(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "other@example.com")
    customer = await the_customer(home)
    stripe_fake.subscribe(customer, PRO_LOOKUP)
    product = stripe_fake.event("product.created", {"id": "prod_1", "customer": customer})
    stranger = stripe_fake.event(
        "invoice.paid", {"id": "in_2", "object": "invoice", "customer": "cus_nobody"}
    )

    for event in (product, stranger):
        status, answer = await post_event(home, *signed(event))
        assert (status, answer["outcome"]) == (200, "ignored")
    assert await plan_of(home) == "free"


async def test_stripe_unreachable_answers_503_and_the_retry_succeeds(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    """A transient failure is 5xx so Stripe retries; the event id is not spent meanwhile."""
    home = await customer_home(household, stripe_fake, "retry@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    body, header = signed(stripe_fake.event("customer.subscription.updated", subscription))
    stripe_fake.fail_next = 3  # more than the client's two network retries

    status, answer = await post_event(home, body, header)
    assert status == 503, answer
    assert answer["code"] == "unavailable"
    assert await plan_of(home) == "free"

    status, answer = await post_event(home, body, header)
    assert (status, answer["outcome"]) == (200, "processed")
    assert await plan_of(home) == "pro"


async def test_an_event_changes_only_its_customers_household(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    payer = await customer_home(household, stripe_fake, "payer@example.com")
    neighbour = await customer_home(household, stripe_fake, "neighbour@example.com")
    subscription = stripe_fake.subscribe(await the_customer(payer), PRO_LOOKUP)
    # The event's object claims the neighbour's household; only the customer id counts.
    subscription["metadata"] = {"tenant_id": neighbour.user.tenant_id}

    await post_event(
        payer, *signed(stripe_fake.event("customer.subscription.created", subscription))
    )

    assert await plan_of(payer) == "pro"
    assert await plan_of(neighbour) == "free"


async def test_webhook_outcomes_are_counted_in_metrics(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await customer_home(household, stripe_fake, "metrics@example.com")
    subscription = stripe_fake.subscribe(await the_customer(home), PRO_LOOKUP)
    body, header = signed(stripe_fake.event("customer.subscription.created", subscription))
    await post_event(home, body, header)
    await post_event(home, body, header)
    await post_event(home, body, "t=1,v1=00")

    text = await (await home.browser.client.get("/metrics")).text()

    def sample(kind: str, outcome: str) -> float:
        match = re.search(
            rf'^billing_webhook_events_total{{outcome="{outcome}",type="{kind}"}} (\S+)$',
            text,
            re.M,
        )
        assert match is not None, (kind, outcome)
        return float(match.group(1))

    assert sample("customer.subscription.created", "processed") == 1
    assert sample("customer.subscription.created", "duplicate") == 1
    assert sample("other", "rejected") == 1
    assert sample("invoice.payment_failed", "processed") == 0


async def test_a_price_no_plan_names_gives_the_free_plan_and_says_so(
    household: HomeFactory, stripe_fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    home = await customer_home(household, stripe_fake, "odd@example.com")
    stripe_fake.add_price("staterelay_legacy")
    subscription = stripe_fake.subscribe(await the_customer(home), "staterelay_legacy")

    status, _ = await post_event(
        home, *signed(stripe_fake.event("customer.subscription.created", subscription))
    )

    assert status == 200
    assert await plan_of(home) == "free"
    assert "lookup key 'staterelay_legacy' that no plan in billing.plans names" in caplog.text


async def test_the_webhook_is_served_on_the_api_host_only(
    hosted: Settings, aiohttp_client: Any, stripe_fake: FakeStripe
) -> None:
    """Split hosts: Stripe's endpoint lives on the API host; the app host answers 404."""
    hosts = HostsSettings(app="app.example.test", api="api.example.test")
    split = dataclasses.replace(hosted, server=dataclasses.replace(hosted.server, hosts=hosts))
    client = await aiohttp_client(create_app(split))
    body, header = signed(stripe_fake.event("product.created", {"id": "prod_1"}))
    sent = {"Stripe-Signature": header, "Content-Type": "application/json"}

    on_api = await client.post(WEBHOOK, data=body, headers={**sent, "Host": "api.example.test"})
    on_app = await client.post(WEBHOOK, data=body, headers={**sent, "Host": "app.example.test"})

    assert on_api.status == 200
    assert (await on_api.json())["outcome"] == "ignored"
    assert on_app.status == 404
    assert on_app.content_type == "application/problem+json"
