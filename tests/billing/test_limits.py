"""Plan limits in core, answered in every surface's wire format; usage; GET /api/v1/billing.

Scenarios: a free household at its device and webhook limits (402 ``plan_limit`` naming the
limit and the upgrade URL); a failed payment (grace banner, then the free limits with
nothing deleted: the newest devices suspended, 402 on their changes, unreachable for Alexa);
the household's choice of active devices; room made; payment recovered; a cancellation at
period end; usage counts; billing off changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import jsonschema
from aiohttp import web

from staterelay.api.openapi import build_document
from staterelay.app.appkeys import CORE_KEY
from staterelay.core.billing import StripeSubscription
from staterelay.integrations.alexa.runtime import ALEXA_KEY
from staterelay.settings import Settings
from tests.alexa.conftest import directive
from tests.billing.conftest import FREE, PRO, HomeFactory
from tests.billing.fake_stripe import PRO_LOOKUP, FakeStripe, signed
from tests.conftest import Account, link_oauth_client, make_account
from tests.oauth.conftest import Client
from tests.ui.homes import Home
from tests.ui.test_pages import INLINE_HANDLER, INLINE_SCRIPT, INLINE_STYLE
from tests.web.support import PASSWORD, FakeClock, build_app, csrf_in

DAY = 86400


async def api_account(app: web.Application, email: str) -> Account:
    """A user of a household of its own, with an API key."""
    return await make_account(app[CORE_KEY], email, new_tenant=True)


async def webhook(client: Client, stripe_fake: FakeStripe, kind: str, obj: dict[str, Any]) -> None:
    body, header = signed(stripe_fake.event(kind, obj))
    response = await client.post(
        "/billing/stripe/webhook",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    assert response.status == 200, await response.text()


async def paying_home(
    household: HomeFactory, stripe_fake: FakeStripe, email: str
) -> tuple[Home, str]:
    """A household on Pro (subscribed through a webhook); returns it and the subscription id."""
    home = await household(email)
    core = home.core
    customer = await core.billing.save_customer(home.user.tenant_id, stripe_fake.new_id("cus"))
    subscription = stripe_fake.subscribe(customer, PRO_LOOKUP)
    await webhook(home.browser.client, stripe_fake, "customer.subscription.created", subscription)
    assert (await core.billing.household(home.user.tenant_id, fresh=True)).plan.key == "pro"
    return home, str(subscription["id"])


# creation limits ---------------------------------------------------------------------------------


async def test_the_api_answers_402_plan_limit_past_the_device_limit(
    hosted_app: web.Application, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(hosted_app)
    account = await api_account(hosted_app, "api@example.com")
    for n in range(3):
        response = await client.post(
            "/api/v1/devices", json={"type": "switch", "name": f"S{n}"}, headers=account.headers
        )
        assert response.status == 201, await response.text()

    response = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "One too many"}, headers=account.headers
    )

    assert response.status == 402
    assert response.content_type == "application/problem+json"
    problem = await response.json(content_type=None)
    assert problem["code"] == "plan_limit"
    assert problem["limit"] == "devices"
    assert problem["upgrade_url"] == "http://localhost:8080/dashboard/billing"
    assert "3 devices" in problem["detail"]
    listed = await client.get("/api/v1/devices", headers=account.headers)
    assert len((await listed.json())["items"]) == 3


async def test_the_webhook_limit_is_the_plans(
    hosted_app: web.Application, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(hosted_app)
    account = await api_account(hosted_app, "hooks@example.com")
    first = await client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/a"}, headers=account.headers
    )
    assert first.status == 201, await first.text()

    second = await client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/b"}, headers=account.headers
    )

    assert second.status == 402
    problem = await second.json(content_type=None)
    assert (problem["code"], problem["limit"]) == ("plan_limit", "webhooks")


async def test_the_dashboard_form_shows_an_upgrade_prompt(household: HomeFactory) -> None:
    home = await household("form@example.com")
    for n in range(3):
        await home.add_device("switch", f"Lamp {n}")

    form = await home.browser.page("/dashboard/devices/new")
    assert 'id="plan-note">You have 3 of the 3 devices the Free plan allows.' in form

    response = await home.post("/dashboard/devices/new", {"type": "switch", "name": "Fourth"})

    assert response.status == 402
    page = await response.text()
    assert "The Free plan allows 3 devices" in page
    assert '<a class="upgrade" href="/dashboard/billing">See plans and upgrade</a>' in page
    assert 'value="Fourth"' in page


async def test_limits_are_per_household(household: HomeFactory, stripe_fake: FakeStripe) -> None:
    paying, _ = await paying_home(household, stripe_fake, "rich@example.com")
    free = await household("frugal@example.com")
    for n in range(4):
        await paying.add_device("switch", f"P{n}")
    for n in range(3):
        await free.add_device("switch", f"F{n}")

    refused = await free.post("/dashboard/devices/new", {"type": "switch", "name": "F3"})

    assert refused.status == 402
    assert await paying.core.store.count_devices(paying.user.tenant_id) == 4


# GET /api/v1/billing ------------------------------------------------------------------------


async def test_get_billing_shows_plan_limits_and_usage_and_matches_the_document(
    hosted_app: web.Application, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(hosted_app)
    account = await api_account(hosted_app, "usage@example.com")
    created = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Lamp"}, headers=account.headers
    )
    device = (await created.json())["id"]
    for value in ("ON", "OFF", "ON"):
        response = await client.put(
            f"/api/v1/devices/{device}/state", json={"power": value}, headers=account.headers
        )
        assert response.status == 200

    response = await client.get("/api/v1/billing", headers=account.headers)

    assert response.status == 200
    body = await response.json()
    assert body["plan"] == "free"
    assert body["status"] == "none"
    assert body["limits"]["devices"] == 3
    assert body["usage"]["devices"] == 1
    assert body["usage"]["state_changes"] == 3
    assert body["suspended_devices"] == []
    schemas = build_document()["components"]["schemas"]
    jsonschema.validate(body, schemas["Billing"])

    await hosted_app[CORE_KEY].usage.flush()
    again = await (await client.get("/api/v1/billing", headers=account.headers)).json()
    assert again["usage"]["state_changes"] == 3, "flushed counts are not counted twice"
    month = body["usage"]["month"]
    stored = await hosted_app[CORE_KEY].store.get_usage(account.tenant_id, month)
    assert stored.state_changes == 3


async def test_get_billing_shows_only_the_callers_household(
    hosted_app: web.Application, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(hosted_app)
    mine = await api_account(hosted_app, "mine@example.com")
    theirs = await api_account(hosted_app, "theirs@example.com")
    made = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Theirs"}, headers=theirs.headers
    )
    device = (await made.json())["id"]
    await client.put(
        f"/api/v1/devices/{device}/state", json={"power": "ON"}, headers=theirs.headers
    )

    body = await (await client.get("/api/v1/billing", headers=mine.headers)).json()

    assert body["usage"]["devices"] == 0
    assert body["usage"]["state_changes"] == 0


async def test_billing_off_has_no_billing_api_and_no_limits(
    app: web.Application, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(app)
    account = await make_account(app[CORE_KEY], "home@example.com")
    response = await client.get("/api/v1/billing", headers=account.headers)
    assert response.status == 404
    for n in range(5):
        made = await client.post(
            "/api/v1/devices", json={"type": "switch", "name": f"S{n}"}, headers=account.headers
        )
        assert made.status == 201
    hook = await client.post("/billing/stripe/webhook", data=b"{}")
    assert hook.status == 404


# grace, downgrade, suspension --------------------------------------------------------------------


async def test_payment_fails_banner_then_grace_ends_free_limits_nothing_deleted(
    household: HomeFactory, stripe_fake: FakeStripe, clock: FakeClock
) -> None:
    home, subscription_id = await paying_home(household, stripe_fake, "late@example.com")
    core = home.core
    tenant = home.user.tenant_id
    ids = [await home.add_device("switch", f"Lamp {n}") for n in range(5)]

    subscription = stripe_fake.update(subscription_id, status="past_due")
    invoice = {"id": "in_failed", "object": "invoice", "customer": subscription["customer"]}
    await webhook(home.browser.client, stripe_fake, "invoice.payment_failed", invoice)

    billing = await core.billing.household(tenant, fresh=True)
    assert billing.plan.key == "pro"
    assert billing.grace_until == clock.now + 7 * DAY
    page = await home.browser.page("/dashboard/billing")
    assert 'id="grace-banner"' in page
    assert "limits stay until" in page
    assert not billing.suspended

    clock.advance(8 * DAY)
    await home.browser.login("late@example.com")  # the session idled out meanwhile
    home.csrf = csrf_in(await home.browser.page("/dashboard"))
    billing = await core.billing.household(tenant, fresh=True)

    assert billing.plan.key == "free"
    assert billing.suspended == frozenset(ids[3:]), "the oldest three stay active"
    assert await core.store.count_devices(tenant) == 5, "nothing deleted"
    refused = await home.post(f"/dashboard/devices/{ids[4]}/state", {"power": "ON"})
    assert refused.status == 402
    allowed = await home.post(f"/dashboard/devices/{ids[0]}/state", {"power": "ON"})
    assert allowed.status == 303
    page = await home.browser.page("/dashboard/billing")
    assert 'id="suspended-banner"' in page
    assert f'id="suspended-{ids[4]}"' in page
    history = await core.activity.list(home.principal, device_id=ids[4], limit=10)
    assert "device.suspended" in [entry.kind for entry in history.items]

    stripe_fake.update(subscription_id, status="active")
    paid = {"id": "in_paid", "object": "invoice", "customer": subscription["customer"]}
    await webhook(home.browser.client, stripe_fake, "invoice.paid", paid)
    billing = await core.billing.household(tenant, fresh=True)
    assert billing.plan.key == "pro"
    assert not billing.suspended
    back = await home.post(f"/dashboard/devices/{ids[4]}/state", {"power": "ON"})
    assert back.status == 303


async def test_the_household_chooses_the_active_devices_and_room_brings_one_back(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home, subscription_id = await paying_home(household, stripe_fake, "choose@example.com")
    core = home.core
    tenant = home.user.tenant_id
    ids = [await home.add_device("switch", f"Lamp {n}") for n in range(5)]
    subscription = stripe_fake.update(subscription_id, status="canceled")
    await webhook(home.browser.client, stripe_fake, "customer.subscription.deleted", subscription)
    assert (await core.billing.household(tenant, fresh=True)).suspended == frozenset(ids[3:])

    chosen = {f"keep:{ids[4]}": "on", f"keep:{ids[3]}": "on", f"keep:{ids[0]}": "on"}
    response = await home.post("/dashboard/billing/devices", chosen)

    assert response.status == 303
    assert (await core.billing.household(tenant)).suspended == frozenset(ids[1:3])
    too_many = await home.post(
        "/dashboard/billing/devices", {f"keep:{device}": "on" for device in ids}
    )
    assert too_many.status == 422
    assert "keeps at most 3 devices active" in await too_many.text()

    await core.devices.delete(home.principal, ids[0], source="ui")
    billing = await core.billing.household(tenant)
    assert len(billing.suspended) == 1, "a suspended device took the freed place"


async def test_members_cannot_choose_devices_or_open_checkout_or_portal(
    household: HomeFactory, stripe_fake: FakeStripe, browse: Any
) -> None:
    admin = await household("boss@example.com")
    await admin.core.users.create(
        email="kid@example.com", password=PASSWORD, tenant_id=admin.user.tenant_id
    )
    browser = await browse(admin.browser.app)
    await browser.login("kid@example.com")
    page = await browser.page("/dashboard/billing")
    assert 'id="upgrade-pro"' not in page
    assert "Ask a household admin" in page
    csrf = csrf_in(page)

    for path, fields in (
        ("/dashboard/billing/checkout", {"plan": "pro"}),
        ("/dashboard/billing/portal", {}),
        ("/dashboard/billing/devices", {}),
    ):
        response = await browser.post(path, fields, csrf=csrf)
        assert response.status == 303, path
        assert response.headers["Location"] == "/dashboard/billing?error=admin"
    assert not stripe_fake.made("POST", "/v1/customers")
    assert not stripe_fake.made("POST", "/v1/checkout/sessions")
    assert not stripe_fake.made("POST", "/v1/billing_portal/sessions")


async def test_portal_cancel_at_period_end_keeps_the_plan_until_the_end(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home, subscription_id = await paying_home(household, stripe_fake, "leaving@example.com")
    tenant = home.user.tenant_id
    ends = int(stripe_fake.subscriptions[subscription_id]["items"]["data"][0]["current_period_end"])
    subscription = stripe_fake.update(subscription_id, cancel_at_period_end=True)

    await webhook(home.browser.client, stripe_fake, "customer.subscription.updated", subscription)

    billing = await home.core.billing.household(tenant, fresh=True)
    assert billing.plan.key == "pro"
    assert billing.subscription is not None
    assert billing.subscription.cancel_at_period_end
    assert billing.subscription.current_period_end == ends
    page = await home.browser.page("/dashboard/billing")
    assert 'id="ending-banner"' in page
    assert 'id="plan-date"' in page

    subscription = stripe_fake.update(subscription_id, status="canceled")
    await webhook(home.browser.client, stripe_fake, "customer.subscription.deleted", subscription)
    assert (await home.core.billing.household(tenant, fresh=True)).plan.key == "free"


# Alexa ----------------------------------------------------------------------------------------


async def test_alexa_sees_a_suspended_device_as_unreachable_never_gone(
    hosted_app: web.Application, aiohttp_client: Any
) -> None:
    await aiohttp_client(hosted_app)
    core = hosted_app[CORE_KEY]
    account = await api_account(hosted_app, "alexa@example.com")
    _, token = await link_oauth_client(core, account)
    principal = await core.auth.authenticate(token)
    paid = StripeSubscription(
        customer_id="cus_lapsed",
        subscription_id="sub_lapsed",
        lookup_key=PRO_LOOKUP,
        status="active",
        current_period_end=None,
        cancel_at_period_end=False,
    )
    await core.billing.apply(account.tenant_id, paid)
    devices = [
        await core.devices.create(principal, type="switch", name=f"S{n}", source="api")
        for n in range(4)
    ]
    # Retries exhausted: the subscription is unpaid, the free plan's three devices stay.
    await core.billing.apply(account.tenant_id, replace(paid, status="unpaid"))
    newest = devices[3].id
    view = hosted_app[ALEXA_KEY].view

    turned = await view.handle(directive("Alexa.PowerController", "TurnOn", token, newest))
    reported = await view.handle(directive("Alexa", "ReportState", token, newest))
    fine = await view.handle(directive("Alexa", "ReportState", token, devices[0].id))
    found = await view.handle(directive("Alexa.Discovery", "Discover", token))

    assert turned["event"]["header"]["name"] == "ErrorResponse"
    assert turned["event"]["payload"]["type"] == "ENDPOINT_UNREACHABLE"

    def health(answer: dict[str, Any]) -> Any:
        (prop,) = [
            p for p in answer["context"]["properties"] if p["namespace"] == "Alexa.EndpointHealth"
        ]
        return prop["value"]

    assert health(reported) == {"value": "UNREACHABLE"}
    assert health(fine) == {"value": "OK"}
    ids = [e["endpointId"] for e in found["event"]["payload"]["endpoints"]]
    assert newest in ids, "never removed from Alexa, so Routines survive"


# per-plan API rate, retention and integrations -----------------------------------------------


async def test_the_plans_api_rate_limit_answers_429_with_retry_after(
    hosted: Settings, aiohttp_client: Any, clock: FakeClock
) -> None:
    tight = dataclasses.replace(FREE, limits=dataclasses.replace(FREE.limits, api_per_minute=3))
    app = build_app(
        dataclasses.replace(
            hosted, billing=dataclasses.replace(hosted.billing, plans=(tight, PRO))
        ),
        clock,
    )
    client = await aiohttp_client(app)
    account = await api_account(app, "chatty@example.com")
    other = await api_account(app, "quiet@example.com")
    for _ in range(3):
        assert (await client.get("/api/v1/devices", headers=account.headers)).status == 200

    refused = await client.get("/api/v1/devices", headers=account.headers)

    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    problem = await refused.json(content_type=None)
    assert (problem["code"], problem["limit"]) == ("rate_limited", "api_per_minute")
    assert "3 API requests a minute" in problem["detail"]
    assert (await client.get("/api/v1/devices", headers=other.headers)).status == 200


async def test_activity_retention_follows_the_plan(
    household: HomeFactory, stripe_fake: FakeStripe, clock: FakeClock
) -> None:
    free = await household("forgetful@example.com")
    paying, _ = await paying_home(household, stripe_fake, "archivist@example.com")
    await free.add_device("switch", "Old lamp")
    await paying.add_device("switch", "Old lamp")
    clock.advance(10 * DAY)

    removed = await free.core.billing.prune_activity()

    assert removed >= 1
    kept_free = await free.core.store.list_activity(free.user.tenant_id, limit=50)
    kept_paying = await paying.core.store.list_activity(paying.user.tenant_id, limit=50)
    assert kept_free == []
    assert any(entry.kind == "device.created" for entry in kept_paying)


async def test_a_plan_without_alexa_refuses_its_directives(
    hosted: Settings, aiohttp_client: Any, clock: FakeClock
) -> None:
    no_alexa = dataclasses.replace(
        FREE, limits=dataclasses.replace(FREE.limits, integrations=("ifttt", "webhooks"))
    )
    app = build_app(
        dataclasses.replace(
            hosted, billing=dataclasses.replace(hosted.billing, plans=(no_alexa, PRO))
        ),
        clock,
    )
    await aiohttp_client(app)
    core = app[CORE_KEY]
    account = await api_account(app, "noalexa@example.com")
    _, token = await link_oauth_client(core, account)
    principal = await core.auth.authenticate(token)
    device = await core.devices.create(principal, type="switch", name="Lamp", source="api")

    answer = await app[ALEXA_KEY].view.handle(
        directive("Alexa.PowerController", "TurnOn", token, device.id)
    )

    assert answer["event"]["payload"]["type"] == "ENDPOINT_UNREACHABLE"
    assert "does not include alexa" in answer["event"]["payload"]["message"]
    assert (await core.devices.get(principal, device.id)).properties["power"].value == "OFF"


async def test_a_suspended_devices_page_says_so_and_billing_pages_keep_the_csp(
    household: HomeFactory, stripe_fake: FakeStripe
) -> None:
    home, subscription_id = await paying_home(household, stripe_fake, "pages@example.com")
    ids = [await home.add_device("switch", f"Lamp {n}") for n in range(4)]
    subscription = stripe_fake.update(subscription_id, status="canceled")
    await webhook(home.browser.client, stripe_fake, "customer.subscription.deleted", subscription)

    suspended = await home.browser.page(f"/dashboard/devices/{ids[3]}")
    active = await home.browser.page(f"/dashboard/devices/{ids[0]}")

    assert 'id="device-suspended"' in suspended
    assert 'id="device-suspended"' not in active
    for path in ("/dashboard/billing", "/dashboard/billing/leave", f"/dashboard/devices/{ids[3]}"):
        html = await home.browser.page(path)
        assert not INLINE_HANDLER.search(html), path
        assert not INLINE_STYLE.search(html), path
        assert not INLINE_SCRIPT.search(html), path
