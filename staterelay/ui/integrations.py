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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from staterelay.core import Core
from staterelay.core.alexa import AlexaStatus
from staterelay.core.models import Principal, Webhook
from staterelay.core.oauth import LinkedApp, OAuthClient
from staterelay.core.oauth_clients import is_alexa_client, is_ifttt_client as ifttt_client
from staterelay.core.webhook_formats import FORMATS, IFTTT_WEBHOOKS
from staterelay.core.webhooks import EVENT_TYPES
from staterelay.errors import NotFound
from staterelay.keys import CORE_KEY, SETTINGS_KEY
from staterelay.settings import Settings
from staterelay.ui.devices import all_devices
from staterelay.ui.present import webhook_name
from staterelay.web.csrf import verify_csrf
from staterelay.web.forms import read_form
from staterelay.web.principal import require_principal
from staterelay.web.render import render, when

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
class AlexaTools:
    """What the Alexa adapter lends the dashboard: the Lambda relay package and setup sheet."""

    lambda_zip: Callable[[], bytes]
    setup_sheet: Callable[[Sequence[OAuthClient]], str]


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


def alexa_view(settings: Settings, status: AlexaStatus, found: Links) -> dict[str, Any]:
    """Alexa's link, token health and last event, as the page shows them."""
    messaging = bool(settings.alexa.messaging_client_id and settings.alexa.messaging_client_secret)
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


async def ifttt_view(core: Core, principal: Principal, found: Links) -> dict[str, Any]:
    """IFTTT's link and how many triggers it watches."""
    configured = core.ifttt.configured
    identities = [
        identity
        for identity in await core.ifttt.identities(principal)
        if identity.deleted_at is None
    ]
    linked = bool(found.ifttt)
    if linked:
        state, label = "linked", "Linked"
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
    }


async def integration_summary(request: web.Request, principal: Principal) -> dict[str, Any]:
    """Alexa, IFTTT and webhooks at a glance, for the dashboard."""
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    found = await links(core, settings, principal)
    alexa = alexa_view(settings, await core.alexa.status(principal), found)
    ifttt = await ifttt_view(core, principal, found)
    hooks = (await core.webhooks.list(principal, limit=50)).items
    enabled = sum(1 for hook in hooks if hook.enabled)
    return {
        "alexa": alexa,
        "ifttt": ifttt,
        "webhooks": {
            "state": "linked" if enabled else "off",
            "label": f"{enabled} active" if hooks else "None yet",
            "count": len(hooks),
        },
    }


@routes.get("/dashboard/integrations", name="integrations")
async def integrations(request: web.Request) -> web.StreamResponse:
    """Alexa, IFTTT and webhooks: what is linked, how it fares, and how to set it up."""
    signed_in, principal = await require_principal(request)
    return await integrations_page(
        request, principal, is_admin=signed_in.is_admin, notice=request.query.get("done")
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
) -> web.Response:
    """Render the integrations page (also with the webhook form's errors)."""
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    found = await links(core, settings, principal)
    tools = request.config_dict.get(ALEXA_TOOLS_KEY)
    hooks = (await core.webhooks.list(principal, limit=50)).items
    devices = await all_devices(core, principal)
    return render(
        request,
        "integrations.html",
        {
            "nav": "integrations",
            "notice": NOTICES.get(notice or ""),
            "alexa": alexa_view(settings, await core.alexa.status(principal), found),
            "ifttt": await ifttt_view(core, principal, found),
            "is_admin": is_admin,
            "setup_sheet": tools.setup_sheet(found.alexa_clients) if tools and is_admin else None,
            "can_download_relay": bool(tools) and is_admin,
            "relay_secret_set": bool(settings.alexa.relay_secret),
            "webhooks": [webhook_row(hook) for hook in hooks],
            "devices": [{"id": device.id, "name": device.name} for device in devices],
            "event_types": [(name, EVENT_LABELS.get(name, name)) for name in EVENT_TYPES],
            "formats": [(name, FORMAT_LABELS.get(name, name)) for name in FORMATS],
            "form": form or {"format": "standard"},
            "errors": errors or {},
        },
        status=status,
    )


def webhook_row(hook: Webhook) -> dict[str, Any]:
    """A webhook as a row of the list."""
    fmt = hook.format
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
    return web.Response(
        body=tools.lambda_zip(),
        content_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="staterelay-alexa.zip"',
            "Cache-Control": "no-store",
        },
    )
