"""The Billing page of a hosted instance: plan, status, usage against each limit, plan cards.

Upgrade opens Stripe Checkout, "Manage billing" the Customer Portal; the success page reads
the Checkout Session back from Stripe and applies the customer's subscription as Stripe has
it, never as the browser says. Only a household admin may act. A household over its device
limit chooses here which devices stay active.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Final

import stripe
from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.household import all_devices
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.core import Core
from staterelay.core.billing import PAID_STATUSES
from staterelay.core.clock import iso
from staterelay.core.errors import Forbidden, InvalidInput, NotFound
from staterelay.core.records import Principal
from staterelay.core.sessions import SignedIn
from staterelay.integrations.billing.stripe_api import StripeApi, StripeNotConfigured
from staterelay.ops.transfer import EXPORT_VERSION, device_document

PAGE: Final = "/dashboard/billing"
STRIPE_API_KEY: Final = web.AppKey("staterelay.billing.stripe", StripeApi)
NOTICES: Final = {
    "subscribed": "Thank you: your subscription is active and its limits apply now.",
    "pending": "Stripe has not confirmed the payment yet; this page shows it once it has.",
    "kept": "Saved: the devices you chose stay active.",
    "canceled": "Checkout was cancelled; nothing changed.",
}
ERRORS: Final = {
    "stripe": "Stripe could not be reached; nothing changed. Try again in a moment.",
    "admin": "Only a household admin can change the plan or the billing details.",
    "plan": "There is no such plan to subscribe to.",
}

routes = web.RouteTableDef()


def _core(request: web.Request) -> Core:
    return request.config_dict[CORE_KEY]


def _public_url(request: web.Request) -> str:
    return request.config_dict[SETTINGS_KEY].public_url


async def _admin(request: web.Request) -> tuple[SignedIn, Principal]:
    """The signed-in household admin; the page with an error for anyone else."""
    signed_in, principal = await require_principal(request)
    try:
        await _core(request).billing.require_admin(principal)
    except Forbidden:
        raise web.HTTPSeeOther(location=f"{PAGE}?error=admin") from None
    return signed_in, principal


@routes.get(PAGE, name="billing")
async def billing_page(request: web.Request) -> web.StreamResponse:
    """The plan, its status and dates, usage against each limit, the plans, the devices."""
    signed_in, principal = await require_principal(request)
    return await _page(request, signed_in, principal, ERRORS.get(request.query.get("error", "")))


async def _page(
    request: web.Request,
    signed_in: SignedIn,
    principal: Principal,
    error: str | None,
    *,
    status: int = 200,
) -> web.Response:
    core = _core(request)
    overview = await core.billing.overview(principal)
    household = overview.household
    devices = await all_devices(core, principal)
    return render(
        request,
        "billing.html",
        {
            "nav": "settings",
            "overview": overview,
            "household": household,
            "plan": household.plan,
            "subscription": household.subscription,
            "paid": household.status in PAID_STATUSES,
            "devices": devices,
            "suspended": household.suspended,
            "over_limit": len(devices) > household.plan.limits.devices,
            "is_admin": signed_in.is_admin,
            "notice": NOTICES.get(request.query.get("done", "")),
            "error": error,
        },
        status=status,
        form_action=None,  # Upgrade and Manage billing redirect to Stripe
    )


@routes.post(f"{PAGE}/checkout", name="billing_checkout")
async def checkout(request: web.Request) -> web.StreamResponse:
    """Start Stripe Checkout for a paid plan (the portal instead while a subscription lives)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await _admin(request)
    core = _core(request)
    api = request.config_dict[STRIPE_API_KEY]
    plan = core.billing.plan(form.get("plan", ""))
    if plan is None or plan.lookup_key is None:
        raise web.HTTPSeeOther(location=f"{PAGE}?error=plan")
    household = await core.billing.household(principal.tenant_id, fresh=True)
    base = _public_url(request)
    try:
        if household.live and household.customer_id:
            url = await api.create_portal(household.customer_id, f"{base}{PAGE}")
            raise web.HTTPSeeOther(location=url)
        customer_id = household.customer_id
        if customer_id is None:
            made = await api.create_customer(principal.tenant_id, signed_in.email)
            customer_id = await core.billing.save_customer(principal.tenant_id, made)
        price_id = await api.price_for(plan.lookup_key)
        if price_id is None:
            raise web.HTTPSeeOther(location=f"{PAGE}?error=plan")
        url = await api.create_checkout(
            tenant_id=principal.tenant_id,
            customer_id=customer_id,
            price_id=price_id,
            success_url=f"{base}{PAGE}/done?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base}{PAGE}?done=canceled",
            attempt=secrets.token_urlsafe(12),
        )
    except (stripe.StripeError, StripeNotConfigured):
        raise web.HTTPSeeOther(location=f"{PAGE}?error=stripe") from None
    raise web.HTTPSeeOther(location=url)


@routes.get(f"{PAGE}/done", name="billing_done")
async def checkout_done(request: web.Request) -> web.StreamResponse:
    """Back from Checkout: read the session from Stripe and apply the subscription now."""
    _, principal = await require_principal(request)
    core = _core(request)
    api = request.config_dict[STRIPE_API_KEY]
    session_id = request.query.get("session_id", "")
    if not session_id.startswith("cs_"):
        raise NotFound("no such checkout")
    household = await core.billing.household(principal.tenant_id, fresh=True)
    try:
        result = await api.read_checkout(session_id)
        if (
            result.tenant_id != principal.tenant_id
            or result.customer_id is None
            or result.customer_id != household.customer_id
        ):
            raise NotFound("no such checkout")
        if result.status != "complete":
            raise web.HTTPSeeOther(location=f"{PAGE}?done=pending")
        facts = await api.subscription_of(result.customer_id)
    except stripe.InvalidRequestError:
        raise NotFound("no such checkout") from None
    except (stripe.StripeError, StripeNotConfigured):
        raise web.HTTPSeeOther(location=f"{PAGE}?error=stripe") from None
    await core.billing.apply(principal.tenant_id, facts)
    done = "subscribed" if facts.status in PAID_STATUSES else "pending"
    raise web.HTTPSeeOther(location=f"{PAGE}?done={done}")


@routes.post(f"{PAGE}/portal", name="billing_portal")
async def portal(request: web.Request) -> web.StreamResponse:
    """Open Stripe's Customer Portal: payment method, invoices, plan changes, cancellation."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await _admin(request)
    household = await _core(request).billing.household(principal.tenant_id, fresh=True)
    if household.customer_id is None:
        raise web.HTTPSeeOther(location=PAGE)
    api = request.config_dict[STRIPE_API_KEY]
    try:
        url = await api.create_portal(household.customer_id, f"{_public_url(request)}{PAGE}")
    except (stripe.StripeError, StripeNotConfigured):
        raise web.HTTPSeeOther(location=f"{PAGE}?error=stripe") from None
    raise web.HTTPSeeOther(location=url)


@routes.post(f"{PAGE}/devices", name="billing_keep_devices")
async def keep_devices(request: web.Request) -> web.StreamResponse:
    """Which devices stay active when the household has more than its plan allows."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await _admin(request)
    ids = [key.partition(":")[2] for key, value in form.items() if key.startswith("keep:")]
    try:
        await _core(request).billing.keep_devices(principal, ids)
    except InvalidInput as error:
        return await _page(request, signed_in, principal, f"{error.detail}.", status=422)
    raise web.HTTPSeeOther(location=f"{PAGE}?done=kept")


# leaving ---------------------------------------------------------------------------------------
@routes.get(f"{PAGE}/leave", name="billing_leave")
async def leave_page(request: web.Request) -> web.StreamResponse:
    """Export the household's data, then delete the household (admins only)."""
    signed_in, principal = await require_principal(request)
    household = await _core(request).billing.household(principal.tenant_id, fresh=True)
    return _leave_page(request, signed_in, household.live, None)


def _leave_page(
    request: web.Request, signed_in: SignedIn, live: bool, error: str | None, status: int = 200
) -> web.Response:
    return render(
        request,
        "billing_leave.html",
        {"nav": "settings", "is_admin": signed_in.is_admin, "live": live, "error": error},
        status=status,
    )


@routes.get(f"{PAGE}/export", name="billing_export")
async def export(request: web.Request) -> web.StreamResponse:
    """The household's devices (the export format) and its whole activity log, as JSON."""
    _, principal = await require_principal(request)
    core = _core(request)
    try:
        await core.households.require_admin(principal)
    except Forbidden:
        raise web.HTTPSeeOther(location=f"{PAGE}?error=admin") from None
    document = await household_export(core, principal)
    response = web.json_response(document, dumps=lambda data: json.dumps(data, indent=2))
    response.headers["Content-Disposition"] = 'attachment; filename="staterelay-household.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


async def household_export(core: Core, principal: Principal) -> dict[str, object]:
    """What a household takes with it: devices as ``staterelay export`` writes them (so
    ``staterelay import`` reads them back), and every activity entry, newest first."""
    devices = [device_document(device) for device in await all_devices(core, principal)]
    activity: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        page = await core.activity.list(principal, cursor=cursor, limit=200)
        activity.extend(
            {**dataclasses.asdict(entry), "created_at": iso(entry.created_at)}
            for entry in page.items
        )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return {"version": EXPORT_VERSION, "devices": devices, "activity": activity}


@routes.post(f"{PAGE}/leave", name="billing_leave_confirm")
async def leave(request: web.Request) -> web.StreamResponse:
    """Cancel a paid subscription in Stripe, then delete the household and all its rows."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await require_principal(request)
    core = _core(request)
    confirm = form.get("confirm", "")
    household = await core.billing.household(principal.tenant_id, fresh=True)
    try:
        await core.households.confirm(principal, confirm)
    except Forbidden:
        raise web.HTTPSeeOther(location=f"{PAGE}?error=admin") from None
    except InvalidInput as error:
        return _leave_page(request, signed_in, household.live, f"{error.detail}.", status=422)
    subscription = household.subscription
    if household.live and subscription is not None and subscription.subscription_id:
        try:
            await request.config_dict[STRIPE_API_KEY].cancel_subscription(
                subscription.subscription_id
            )
        except (stripe.StripeError, StripeNotConfigured):
            message = "Stripe could not cancel the subscription, so nothing was deleted. Try again."
            return _leave_page(request, signed_in, True, message, status=502)
    await core.households.delete(principal, confirm_email=confirm)
    core.billing.forget(principal.tenant_id)
    raise web.HTTPSeeOther(location="/login")
