"""Webhooks in the dashboard: create one (its secret shown once), test it, read its deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.household import FAILING_RUN, all_devices, webhook_health, webhook_row
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.browser.sessions import safe_next
from staterelay.core.errors import InvalidInput, PlanLimit
from staterelay.core.records import Principal
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS, STANDARD
from staterelay.core.webhooks import EVENT_TYPES
from staterelay.ui.forms import human_errors
from staterelay.ui.integrations import integrations_page

DELIVERY_PAGE: Final = 25
NOTICES: Final = {
    "tested": "A test event is on its way. It shows up under Deliveries in a moment.",
    "enabled": "The webhook is on.",
    "disabled": "The webhook is off: nothing is sent until you turn it on again.",
}

routes = web.RouteTableDef()


def webhook_fields(form: Mapping[str, str]) -> dict[str, Any]:
    """The create form as the fields ``core.webhooks.create`` takes."""
    fmt = form.get("format", STANDARD)
    fields: dict[str, Any] = {"format": fmt, "description": form.get("description", "")}
    url = form.get("url", "").strip()
    if url or fmt != IFTTT_WEBHOOKS:
        fields["url"] = url
    if fmt == IFTTT_WEBHOOKS:
        fields["ifttt_event"] = form.get("ifttt_event", "").strip()
        fields["ifttt_key"] = form.get("ifttt_key", "").strip()
    events = [name for name in EVENT_TYPES if form.get(f"event:{name}") == "on"]
    if not events:
        raise InvalidInput("choose at least one kind of event", field="event_types")
    fields["event_types"] = None if len(events) == len(EVENT_TYPES) else events
    devices = [key.removeprefix("device:") for key in form if key.startswith("device:")]
    fields["device_ids"] = devices or None
    return fields


@routes.post("/dashboard/integrations/webhooks", name="webhook_create")
async def create_webhook(request: web.Request) -> web.StreamResponse:
    """Create a webhook and show its signing secret, this once."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await require_principal(request)
    try:
        webhook, secret = await request.config_dict[CORE_KEY].webhooks.create(
            principal, webhook_fields(form)
        )
    except InvalidInput as error:
        return await integrations_page(
            request,
            principal,
            is_admin=signed_in.is_admin,
            form=form,
            errors=human_errors(error),
            status=422,
        )
    except PlanLimit as error:
        return await integrations_page(
            request,
            principal,
            is_admin=signed_in.is_admin,
            form=form,
            errors={"form": error.detail, "upgrade_url": "/dashboard/billing"},
            status=402,
        )
    return await webhook_page(request, principal, webhook.id, secret=secret)


@routes.get("/dashboard/integrations/webhooks/{webhook_id}", name="webhook")
async def webhook_detail(request: web.Request) -> web.StreamResponse:
    """One webhook: what it sends, where, and every delivery attempt."""
    _, principal = await require_principal(request)
    return await webhook_page(
        request,
        principal,
        request.match_info["webhook_id"],
        notice=NOTICES.get(request.query.get("done", "")),
    )


async def webhook_page(
    request: web.Request,
    principal: Principal,
    webhook_id: str,
    *,
    secret: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    """Render a webhook's page."""
    core = request.config_dict[CORE_KEY]
    webhooks = core.webhooks
    webhook = await webhooks.get(principal, webhook_id)
    cursor = request.query.get("cursor") or None
    page = await webhooks.deliveries(principal, webhook.id, cursor=cursor, limit=DELIVERY_PAGE)
    recent = (
        page.items
        if cursor is None
        else (
            await webhooks.deliveries(principal, webhook.id, cursor=None, limit=FAILING_RUN)
        ).items
    )
    names = {device.id: device.name for device in await all_devices(core, principal)}
    row = webhook_row(webhook, names)
    row["health"] = webhook_health(
        webhook, recent, request.config_dict[SETTINGS_KEY].webhooks.max_attempts
    )
    return render(
        request,
        "webhook.html",
        {
            "nav": "integrations",
            "webhook": row,
            "secret": secret,
            "notice": notice,
            "error": error,
            "deliveries": [
                {
                    "event_type": delivery.event_type,
                    "attempt": delivery.attempt,
                    "status_code": delivery.status_code,
                    "ok": delivery.status_code is not None and 200 <= delivery.status_code < 300,
                    "error": delivery.error,
                    "duration_ms": round(delivery.duration_ms),
                    "at": delivery.created_at,
                }
                for delivery in page.items
            ],
            "next_cursor": page.next_cursor,
        },
        status=status,
    )


@routes.post("/dashboard/integrations/webhooks/{webhook_id}/test", name="webhook_test")
async def test_webhook(request: web.Request) -> web.StreamResponse:
    """Queue a test event for the webhook."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    webhook_id = request.match_info["webhook_id"]
    try:
        await request.config_dict[CORE_KEY].webhooks.send_test(principal, webhook_id)
    except InvalidInput as error:
        detail = error.detail[:1].upper() + error.detail[1:] + "."
        return await webhook_page(request, principal, webhook_id, error=detail, status=422)
    back = safe_next(form.get("next"), f"/dashboard/integrations/webhooks/{webhook_id}")
    raise web.HTTPSeeOther(location=f"{back}?done=tested")


@routes.post("/dashboard/integrations/webhooks/{webhook_id}/enabled", name="webhook_enabled")
async def switch_webhook(request: web.Request) -> web.StreamResponse:
    """Turn the webhook on or off."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    webhook_id = request.match_info["webhook_id"]
    enabled = form.get("enabled") == "on"
    await request.config_dict[CORE_KEY].webhooks.update(principal, webhook_id, {"enabled": enabled})
    done = "enabled" if enabled else "disabled"
    raise web.HTTPSeeOther(location=f"/dashboard/integrations/webhooks/{webhook_id}?done={done}")


@routes.post("/dashboard/integrations/webhooks/{webhook_id}/delete", name="webhook_delete")
async def delete_webhook(request: web.Request) -> web.StreamResponse:
    """Delete the webhook and what is still queued for it."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    await request.config_dict[CORE_KEY].webhooks.delete(principal, request.match_info["webhook_id"])
    raise web.HTTPSeeOther(location="/dashboard/integrations?done=webhook-deleted")
