"""The integrations page: Alexa and IFTTT link health, the Lambda relay, and webhooks.

A link is two things: the OAuth grant the user gave Alexa's skill or IFTTT's service at the
consent page (``core.oauth``), and, for Alexa, the Login with Amazon grant StateRelay uses
to send events (``core.alexa``). Both are read through core; the Alexa adapter lends the
dashboard its relay package and setup sheet through ``ALEXA_TOOLS_KEY`` (the app factory
wires it), because adapters never import each other.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render, when
from staterelay.core import Core
from staterelay.core.alexa import AlexaStatus
from staterelay.core.errors import Conflict, NotFound
from staterelay.core.guide import GuideStep
from staterelay.core.oauth import LinkedApp, OAuthClient
from staterelay.core.oauth_clients import is_alexa_client, is_ifttt_client as ifttt_client
from staterelay.core.records import Principal, Webhook, WebhookDelivery
from staterelay.core.webhook_formats import FORMATS, IFTTT_WEBHOOKS
from staterelay.core.webhooks import EVENT_TYPES
from staterelay.settings import Settings
from staterelay.ui.devices import all_devices
from staterelay.ui.present import webhook_name

NOTICES: Final = {
    "alexa-unlinked": "Alexa is unlinked. Disable the skill in the Alexa app to remove its "
    "devices there too.",
    "ifttt-unlinked": "IFTTT is unlinked. Its Applets stop working until you connect again.",
    "webhook-deleted": "The webhook was deleted.",
}
EVENT_LABELS: Final = {
    "state.changed": "State changes",
    "button.pressed": "Button presses",
    "device.created": "Devices created",
    "device.updated": "Devices renamed or changed",
    "device.deleted": "Devices deleted",
}
FORMAT_LABELS: Final = {
    "standard": "Signed JSON (Standard Webhooks)",
    IFTTT_WEBHOOKS: "IFTTT Webhooks trigger",
}

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class GuideProgress:
    """What the Alexa guide needs to know beyond the clients: what StateRelay has seen."""

    messaging: bool
    new_client_secret: str | None = None
    relay_seen: bool | None = None
    linked: bool | None = None
    accept_grant: bool | None = None
    routine_switch: bool | None = None
    report_accepted: bool | None = None


@dataclass(frozen=True, slots=True)
class AlexaTools:
    """What the Alexa adapter lends the dashboard: its guide, relay package and test event."""

    lambda_zip: Callable[[], bytes]
    guide: Callable[[Sequence[OAuthClient], GuideProgress], list[GuideStep]]
    relay_secret: str
    unreachable: str | None
    """Why Amazon could not use the relay's URL; None when it can."""
    send_test: Callable[[Principal], Awaitable[tuple[bool, str]]]


ALEXA_TOOLS_KEY: Final = web.AppKey("staterelay.ui.alexa_tools", AlexaTools)


@dataclass(frozen=True, slots=True)
class Links:
    """The user's OAuth grants, split by who holds them."""

    alexa: list[LinkedApp]
    ifttt: list[LinkedApp]
    alexa_clients: list[OAuthClient]
    ifttt_clients: list[OAuthClient]


def _host_of(uri: str) -> str:
    return (urlsplit(uri).hostname or "").lower()


def is_ifttt_client(client: OAuthClient, settings: Settings) -> bool:
    """True for the IFTTT service's client (by configured id, scope or redirect URL)."""
    return ifttt_client(client, settings.ifttt.client_id)


async def links(core: Core, settings: Settings, principal: Principal) -> Links:
    """The principal's user's grants to Alexa and IFTTT, and the clients registered for them."""
    clients = list(await core.oauth.list_clients())
    alexa_ids = {client.id for client in clients if is_alexa_client(client)}
    ifttt_ids = {client.id for client in clients if is_ifttt_client(client, settings)}
    grants = await core.oauth.list_grants(principal)
    return Links(
        alexa=[grant for grant in grants if grant.client_id in alexa_ids],
        ifttt=[grant for grant in grants if grant.client_id in ifttt_ids],
        alexa_clients=[client for client in clients if client.id in alexa_ids],
        ifttt_clients=[client for client in clients if client.id in ifttt_ids],
    )


def alexa_view(status: AlexaStatus, found: Links, messaging: bool) -> dict[str, Any]:
    """Alexa's link, token health and last event, as the page shows them."""
    set_up = bool(found.alexa_clients) or messaging
    linked = status.linked or bool(found.alexa)
    problems: list[str] = []
    if status.token_error:
        problems.append(f"Token refresh failed {when(status.token_error_at)}: {status.token_error}")
    if status.last_report_error:
        problems.append(f"The last event failed: {status.last_report_error}")
    if linked and not messaging:
        problems.append(
            "Proactive events are not configured on this server, so Alexa only learns of "
            "changes when it asks."
        )
    if linked:
        state = "attention" if problems else "linked"
        label = "Linked" + (f" · {status.region}" if status.region else "")
    elif not set_up:
        state, label = "unavailable", "Not set up"
    else:
        state, label = "off", "Not linked"
    report = None
    if status.last_report_at is not None:
        code = status.last_report_status
        accepted = status.last_report_error is None and code is not None and code < 300
        report = {
            "ok": accepted,
            "text": (
                f"Accepted ({code})"
                if accepted
                else f"Failed ({code})"
                if code is not None
                else "Not sent"
            ),
            "at": status.last_report_at,
        }
    token = None
    if status.token_expires_at is not None:
        token = {
            "ok": status.token_error is None,
            "refreshed_at": status.token_refreshed_at,
            "expires_at": status.token_expires_at,
            "expired": status.token_expires_at < time.time(),
        }
    return {
        "state": state,
        "label": label,
        "linked": linked,
        "set_up": set_up,
        "messaging": messaging,
        "region": status.region,
        "linked_at": status.linked_at,
        "report": report,
        "token": token,
        "problems": problems,
        "grants": found.alexa,
        "unlinked_reason": None if linked else status.unlinked_reason,
        "unlinked_at": status.unlinked_at,
    }


async def ifttt_view(
    core: Core, principal: Principal, found: Links, rows: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """IFTTT's link, how many triggers it watches, and the Webhooks route's health."""
    configured = core.ifttt.configured
    identities = [
        identity
        for identity in await core.ifttt.identities(principal)
        if identity.deleted_at is None
    ]
    maker = [row for row in rows if row["format"] == IFTTT_WEBHOOKS]
    linked = bool(found.ifttt)
    if linked:
        state, label = "linked", "Linked"
    elif maker:
        worst = worst_health(maker)
        state = worst["state"]
        label = "Webhooks · " + worst["label"].lower()
    elif not configured and not found.ifttt_clients:
        state, label = "unavailable", "Not set up"
    else:
        state, label = "off", "Not linked"
    return {
        "state": state,
        "label": label,
        "linked": linked,
        "configured": configured,
        "grants": found.ifttt,
        "triggers": len(identities),
        "webhooks": maker,
    }


async def integration_summary(request: web.Request, principal: Principal) -> dict[str, Any]:
    """Alexa, IFTTT and webhooks at a glance, for the dashboard."""
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    found = await links(core, settings, principal)
    messaging = await core.alexa.messaging() is not None
    alexa = alexa_view(await core.alexa.status(principal), found, messaging)
    rows = await webhook_rows(request, principal)
    ifttt = await ifttt_view(core, principal, found, rows)
    return {"alexa": alexa, "ifttt": ifttt, "webhooks": webhooks_summary(rows)}


def webhooks_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The webhooks chip: the worst health of the webhooks that are on."""
    if not rows:
        return {"state": "off", "label": "None yet", "count": 0}
    on = [row for row in rows if row["enabled"]]
    if not on:
        return {"state": "off", "label": "All off", "count": len(rows)}
    worst = worst_health(on)
    failing = sum(1 for row in on if row["health"]["state"] == "error")
    troubled = worst["state"] in ("error", "attention")
    detail = f"{worst['name']}: {worst['detail']}" if troubled else ""
    if failing:
        label = f"{failing} failing"
    elif worst["state"] == "attention":
        label = "Retrying"
    elif worst["state"] == "linked":
        label = f"{len(on)} delivering"
    else:
        label = f"{len(on)} waiting"
    return {"state": worst["state"], "label": label, "count": len(rows), "detail": detail}


_SEVERITY: Final = {"error": 3, "attention": 2, "off": 1, "linked": 0}


def worst_health(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The health of the row in the worst state, with that webhook's name."""
    row = max(rows, key=lambda r: _SEVERITY[r["health"]["state"]])
    return {**row["health"], "name": row.get("name", "")}


FAILING_RUN: Final = 3  # this many failed deliveries in a row, and a webhook shows red


def webhook_health(
    hook: Webhook, recent: Sequence[WebhookDelivery], max_attempts: int
) -> dict[str, Any]:
    """Green when the last delivery succeeded, amber while one is retried, red when the
    last deliveries failed or one was given up; with the last error."""
    if not hook.enabled:
        reason = hook.disabled_reason or "turned off"
        return {"state": "off", "label": "Off", "detail": reason, "at": None}
    if not recent:
        return {"state": "off", "label": "Nothing sent yet", "detail": "", "at": None}
    last = recent[0]
    ok = last.status_code is not None and 200 <= last.status_code < 300
    if ok:
        return {"state": "linked", "label": "Delivered", "detail": "", "at": last.created_at}
    answer = f"answered {last.status_code}" if last.status_code is not None else "no answer"
    error = f"{answer}: {last.error}" if last.error else answer
    run = recent[:FAILING_RUN]
    all_failed = len(run) == FAILING_RUN and not any(
        d.status_code is not None and 200 <= d.status_code < 300 for d in run
    )
    if last.attempt >= max_attempts:
        return {"state": "error", "label": "Gave up", "detail": error, "at": last.created_at}
    if all_failed:
        return {"state": "error", "label": "Failing", "detail": error, "at": last.created_at}
    return {"state": "attention", "label": "Retrying", "detail": error, "at": last.created_at}


async def webhook_rows(request: web.Request, principal: Principal) -> list[dict[str, Any]]:
    """The principal's webhooks as rows of the list, each with its health."""
    core = request.config_dict[CORE_KEY]
    max_attempts = request.config_dict[SETTINGS_KEY].webhooks.max_attempts
    hooks = (await core.webhooks.list(principal, limit=50)).items
    names = {device.id: device.name for device in await all_devices(core, principal)}
    rows = []
    for hook in hooks:
        recent = await core.webhooks.deliveries(principal, hook.id, cursor=None, limit=FAILING_RUN)
        row = webhook_row(hook, names)
        row["health"] = webhook_health(hook, recent.items, max_attempts)
        rows.append(row)
    return rows


@routes.get("/dashboard/integrations", name="integrations")
async def integrations(request: web.Request) -> web.StreamResponse:
    """Alexa, IFTTT and webhooks: what is linked, how it fares, and how to set it up."""
    signed_in, principal = await require_principal(request)
    chosen = request.query.get("format", "standard")
    return await integrations_page(
        request,
        principal,
        is_admin=signed_in.is_admin,
        notice=request.query.get("done"),
        form={"format": chosen if chosen in FORMATS else "standard"},
        open_form="format" in request.query,
    )


async def integrations_page(
    request: web.Request,
    principal: Principal,
    *,
    is_admin: bool,
    notice: str | None = None,
    form: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    open_form: bool = False,
) -> web.Response:
    """Render the integrations page (also with the webhook form's errors)."""
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    found = await links(core, settings, principal)
    rows = await webhook_rows(request, principal)
    devices = await all_devices(core, principal)
    messaging = await core.alexa.messaging() is not None
    return render(
        request,
        "integrations.html",
        {
            "nav": "integrations",
            "notice": NOTICES.get(notice or ""),
            "alexa": alexa_view(await core.alexa.status(principal), found, messaging),
            "ifttt": await ifttt_view(core, principal, found, rows),
            "is_admin": is_admin,
            "webhooks": rows,
            "devices": [{"id": device.id, "name": device.name} for device in devices],
            "event_types": [(name, EVENT_LABELS.get(name, name)) for name in EVENT_TYPES],
            "formats": [(name, FORMAT_LABELS.get(name, name)) for name in FORMATS],
            "form": form or {"format": "standard"},
            "open_form": open_form,
            "errors": errors or {},
        },
        status=status,
    )


def webhook_row(hook: Webhook, device_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A webhook as a row of the list (with the names of the devices it is limited to)."""
    fmt = hook.format
    names = device_names or {}
    return {
        "id": hook.id,
        "url": hook.url,
        "host": _host_of(hook.url) or hook.url,
        "name": webhook_name(hook),
        "description": hook.description,
        "enabled": hook.enabled,
        "disabled_reason": hook.disabled_reason,
        "format": fmt,
        "format_label": FORMAT_LABELS.get(fmt, fmt),
        "ifttt_event": hook.ifttt_event,
        "events": (
            "every event"
            if hook.event_types is None
            else ", ".join(EVENT_LABELS.get(name, name).lower() for name in hook.event_types)
        ),
        "devices": hook.device_ids,
        "device_names": None
        if hook.device_ids is None
        else [names.get(device_id, "a deleted device") for device_id in hook.device_ids],
        "created": when(hook.created_at),
    }


@routes.post("/dashboard/integrations/alexa/unlink", name="alexa_unlink")
async def unlink_alexa(request: web.Request) -> web.StreamResponse:
    """Revoke Alexa's grant (no more directives) and its event tokens (no more reports)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    found = await links(core, request.config_dict[SETTINGS_KEY], principal)
    revoked = {grant.grant_id for grant in found.alexa}
    for grant_id in revoked:
        await core.oauth.revoke_grant(principal, grant_id)
    ended = await core.alexa.unlink_user(principal, "unlinked in the dashboard")
    if ended is not None and ended.oauth_grant_id and ended.oauth_grant_id not in revoked:
        # The skill linked through a client not registered as Alexa's: revoke it too, so
        # Alexa can no longer send directives either.
        with contextlib.suppress(NotFound):
            await core.oauth.revoke_grant(principal, ended.oauth_grant_id)
    if not found.alexa and ended is None:
        raise NotFound("Alexa is not linked")
    raise web.HTTPSeeOther(location="/dashboard/integrations?done=alexa-unlinked")


@routes.post("/dashboard/integrations/ifttt/unlink", name="ifttt_unlink")
async def unlink_ifttt(request: web.Request) -> web.StreamResponse:
    """Revoke the grant IFTTT's service holds."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    found = await links(core, request.config_dict[SETTINGS_KEY], principal)
    if not found.ifttt:
        raise NotFound("IFTTT is not linked")
    for grant in found.ifttt:
        await core.oauth.revoke_grant(principal, grant.grant_id)
    raise web.HTTPSeeOther(location="/dashboard/integrations?done=ifttt-unlinked")


@routes.get("/dashboard/integrations/alexa/staterelay-alexa.zip", name="alexa_lambda")
async def alexa_lambda(request: web.Request) -> web.StreamResponse:
    """The Lambda relay package (admins only: it holds the relay secret)."""
    signed_in, _ = await require_principal(request)
    tools = request.config_dict.get(ALEXA_TOOLS_KEY)
    if tools is None or not signed_in.is_admin:
        raise NotFound("there is no relay package to download here")
    if tools.unreachable is not None:
        url = request.config_dict[SETTINGS_KEY].public_url
        raise Conflict(
            f"the relay would forward to {url}, and {tools.unreachable}: Amazon's Lambda "
            "needs an https address it can reach. Set server.public_url to it (step 1) and "
            "download the package again"
        )
    return web.Response(
        body=tools.lambda_zip(),
        content_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="staterelay-alexa.zip"',
            "Cache-Control": "no-store",
        },
    )
