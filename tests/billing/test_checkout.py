"""Upgrade through Stripe Checkout, back through the success page, the portal.

The scenario of the issue over HTTP: a free household hits the device limit, upgrades, comes
back from Checkout (the page reads the session from Stripe, never trusting the browser), the
webhook arrives, and the limit is lifted. ``test_browser.py`` walks the same path in Chromium.
"""

from __future__ import annotations

from tests.billing.conftest import HomeFactory
from tests.billing.fake_stripe import PRO_LOOKUP, FakeStripe, signed
from tests.ui.homes import Home


async def upgrade(home: Home) -> str:
    """Press Upgrade on the Pro card; returns where the browser is sent."""
    response = await home.post("/dashboard/billing/checkout", {"plan": "pro"})
    assert response.status == 303, await response.text()
    return response.headers["Location"]


async def test_free_household_upgrades_through_checkout_and_the_limit_lifts(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await household("upgrade@example.com")
    tenant = home.user.tenant_id
    for n in range(3):
        await home.add_device("switch", f"Lamp {n}")
    refused = await home.post("/dashboard/devices/new", {"type": "switch", "name": "Porch"})
    assert refused.status == 402
    page = await home.browser.page("/dashboard/billing")
    assert 'id="upgrade-pro"' in page
    assert 'id="usage-devices">3</strong> of 3' in page

    location = await upgrade(home)

    assert location.startswith(f"{stripe_fake.url}/pay/cs_")
    session_id = location.rsplit("/", 1)[1]
    (customer_call,) = stripe_fake.made("POST", "/v1/customers")
    assert customer_call.headers["Idempotency-Key"] == f"customer:{tenant}"
    assert customer_call.params["metadata[tenant_id]"] == tenant
    (session_call,) = stripe_fake.made("POST", "/v1/checkout/sessions")
    customer = stripe_fake.sessions[session_id]["customer"]
    assert session_call.params["mode"] == "subscription"
    assert session_call.params["customer"] == customer
    assert session_call.params["client_reference_id"] == tenant
    assert session_call.params["line_items[0][price]"] == stripe_fake.prices[PRO_LOOKUP]["id"]
    assert session_call.params["success_url"] == (
        "http://localhost:8080/dashboard/billing/done?session_id={CHECKOUT_SESSION_ID}"
    )
    assert session_call.headers["Idempotency-Key"].startswith(f"checkout:{tenant}:")
    assert session_call.headers["Stripe-Version"] == "2026-10-28.endive"

    # Back before Stripe confirmed the payment: nothing changes yet.
    early = await home.browser.get(f"/dashboard/billing/done?session_id={session_id}")
    assert early.headers["Location"] == "/dashboard/billing?done=pending"
    assert (await home.core.billing.household(tenant, fresh=True)).plan.key == "free"

    subscription = stripe_fake.complete(session_id)
    back = await home.browser.get(f"/dashboard/billing/done?session_id={session_id}")

    assert back.headers["Location"] == "/dashboard/billing?done=subscribed"
    assert (await home.core.billing.household(tenant, fresh=True)).plan.key == "pro"
    await home.add_device("switch", "Porch")

    # The webhook arrives after the return: taken once, the plan stays.
    session = stripe_fake.sessions[session_id]
    body, header = signed(stripe_fake.event("checkout.session.completed", session))
    hook = await home.browser.client.post(
        "/billing/stripe/webhook", data=body, headers={"Stripe-Signature": header}
    )
    assert hook.status == 200
    assert (await hook.json())["outcome"] == "processed"
    billing = await home.core.billing.household(tenant, fresh=True)
    assert billing.plan.key == "pro"
    assert billing.subscription is not None
    assert billing.subscription.subscription_id == subscription["id"]
    page = await home.browser.page("/dashboard/billing?done=subscribed")
    assert 'id="plan-name">Pro</span>' in page
    assert 'id="usage-devices">4</strong> of 10' in page
    assert "Thank you: your subscription is active" in page


async def test_one_customer_per_household_reused_across_attempts(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await household("again@example.com")
    first = await upgrade(home)
    second = await upgrade(home)

    assert first != second
    assert len(stripe_fake.made("POST", "/v1/customers")) == 1
    calls = stripe_fake.made("POST", "/v1/checkout/sessions")
    assert len({call.params["customer"] for call in calls}) == 1
    assert calls[0].headers["Idempotency-Key"] != calls[1].headers["Idempotency-Key"]


async def test_a_live_subscription_goes_to_the_portal_instead(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await household("portal@example.com")
    session_id = (await upgrade(home)).rsplit("/", 1)[1]
    stripe_fake.complete(session_id)
    await home.browser.get(f"/dashboard/billing/done?session_id={session_id}")
    customer = stripe_fake.sessions[session_id]["customer"]

    again = await upgrade(home)
    managed = await home.post("/dashboard/billing/portal")

    assert again == f"{stripe_fake.url}/portal/{customer}"
    assert managed.status == 303
    assert managed.headers["Location"] == f"{stripe_fake.url}/portal/{customer}"
    portal_calls = stripe_fake.made("POST", "/v1/billing_portal/sessions")
    assert portal_calls[-1].params["return_url"] == "http://localhost:8080/dashboard/billing"
    assert len(stripe_fake.made("POST", "/v1/checkout/sessions")) == 1


async def test_the_success_page_trusts_stripe_not_the_browser(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    payer = await household("payer@example.com")
    other = await household("other@example.com")
    session_id = (await upgrade(payer)).rsplit("/", 1)[1]
    stripe_fake.complete(session_id)

    stolen = await other.browser.get(f"/dashboard/billing/done?session_id={session_id}")
    made_up = await other.browser.get("/dashboard/billing/done?session_id=cs_made_up")
    not_one = await other.browser.get("/dashboard/billing/done?session_id=../../v1/customers")

    assert stolen.status == 404
    assert made_up.status == 404
    assert not_one.status == 404
    assert (await other.core.billing.household(other.user.tenant_id, fresh=True)).plan.key == "free"


async def test_unknown_plans_and_stripe_outages_change_nothing(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home = await household("careful@example.com")
    unknown = await home.post("/dashboard/billing/checkout", {"plan": "enterprise"})
    free = await home.post("/dashboard/billing/checkout", {"plan": "free"})
    stripe_fake.fail_next = 10
    outage = await home.post("/dashboard/billing/checkout", {"plan": "pro"})

    assert unknown.headers["Location"] == "/dashboard/billing?error=plan"
    assert free.headers["Location"] == "/dashboard/billing?error=plan"
    assert outage.headers["Location"] == "/dashboard/billing?error=stripe"
    page = await home.browser.page("/dashboard/billing?error=stripe")
    assert "Stripe could not be reached" in page
    billing = await home.core.billing.household(home.user.tenant_id, fresh=True)
    assert billing.customer_id is None
    assert billing.plan.key == "free"
    assert len(stripe_fake.made("POST", "/v1/customers")) == 3, "two retries, one key"
    keys = {call.headers["Idempotency-Key"] for call in stripe_fake.made("POST", "/v1/customers")}
    assert keys == {f"customer:{home.user.tenant_id}"}
