"""Alexa on the dashboard: its card, the guided set-up page and their actions.

The card shows the link: the OAuth grant the user gave Alexa's skill at the consent page
(``core.oauth``) and the Login with Amazon grant StateRelay sends events with
(``core.alexa``). The set-up page shows the ten steps of docs/alexa.md with this instance's
values, each ticked once StateRelay has seen it happen, and lets an admin register the
skill's OAuth client, keep its messaging credentials, download the relay package and send
a test event.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.integration import Card, CardFacts
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import field_errors, read_form
from staterelay.browser.household import all_devices
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render, when
from staterelay.core import Core
from staterelay.core.alexa import AlexaStatus
from staterelay.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from staterelay.core.facts import ALEXA_CHANGE_REPORT_SEEN, ALEXA_RELAY_SEEN
from staterelay.core.guide import GuideStep, GuideValue
from staterelay.core.oauth import LinkedApp, OAuthClient
from staterelay.core.oauth_clients import alexa_preset, is_alexa_client
from staterelay.core.records import Principal
from staterelay.core.sessions import SignedIn
from staterelay.integrations.alexa.console import (
    AlexaProgress,
    SetupPlan,
    alexa_clients,
    setup_steps,
)
from staterelay.integrations.alexa.runtime import ALEXA_KEY

SETUP_PATH: Final = "/dashboard/integrations/alexa"
NOTICES: Final = {
    "messaging": "Saved. StateRelay uses them from now on; no restart is needed.",
    "tested": "A test event is on its way: its delivery shows in a moment (reload the page).",
}

routes = web.RouteTableDef()


# the card -------------------------------------------------------------------------------------
async def card_view(facts: CardFacts) -> dict[str, Any]:
    """Alexa's link, token health and last event, for its card and chip."""
    core = facts.core
    clients = [client for client in facts.clients if is_alexa_client(client)]
    ids = {client.id for client in clients}
    grants = [grant for grant in facts.grants if grant.client_id in ids]
    messaging = await core.alexa.messaging() is not None
    return alexa_view(await core.alexa.status(facts.principal), grants, clients, messaging)


CARD: Final = Card(
    key="alexa",
    title="Amazon Alexa",
    name="Alexa",
    icon="alexa",
    view=card_view,
    template="cards/alexa.html",
    setup_path=SETUP_PATH,
    notices={
        "alexa-unlinked": "Alexa is unlinked. Disable the skill in the Alexa app to remove its "
        "devices there too."
    },
)


def alexa_view(
    status: AlexaStatus,
    grants: Sequence[LinkedApp],
    clients: Sequence[OAuthClient],
    messaging: bool,
) -> dict[str, Any]:
    """Alexa's link, token health and last event, as the page shows them."""
    set_up = bool(clients) or messaging
    linked = status.linked or bool(grants)
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
        "grants": grants,
        "unlinked_reason": None if linked else status.unlinked_reason,
        "unlinked_at": status.unlinked_at,
    }


async def _alexa_grants(
    core: Core, principal: Principal
) -> tuple[list[LinkedApp], list[OAuthClient]]:
    """The user's grants to Alexa's skill, and the OAuth clients registered for it."""
    clients = [client for client in await core.oauth.list_clients() if is_alexa_client(client)]
    ids = {client.id for client in clients}
    grants = [grant for grant in await core.oauth.list_grants(principal) if grant.client_id in ids]
    return grants, clients


@routes.post("/dashboard/integrations/alexa/unlink", name="alexa_unlink")
async def unlink_alexa(request: web.Request) -> web.StreamResponse:
    """Revoke Alexa's grant (no more directives) and its event tokens (no more reports)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    grants, _ = await _alexa_grants(core, principal)
    revoked = {grant.grant_id for grant in grants}
    for grant_id in revoked:
        await core.oauth.revoke_grant(principal, grant_id)
    ended = await core.alexa.unlink_user(principal, "unlinked in the dashboard")
    if ended is not None and ended.oauth_grant_id and ended.oauth_grant_id not in revoked:
        # The skill linked through a client not registered as Alexa's: revoke it too, so
        # Alexa can no longer send directives either.
        with contextlib.suppress(NotFound):
            await core.oauth.revoke_grant(principal, ended.oauth_grant_id)
    if not grants and ended is None:
        raise NotFound("Alexa is not linked")
    raise web.HTTPSeeOther(location="/dashboard/integrations?done=alexa-unlinked")


@routes.get("/dashboard/integrations/alexa/staterelay-alexa.zip", name="alexa_lambda")
async def alexa_lambda(request: web.Request) -> web.StreamResponse:
    """The Lambda relay package (admins only: it holds the relay secret)."""
    signed_in, _ = await require_principal(request)
    alexa = request.config_dict[ALEXA_KEY]
    if not alexa.self_service or not signed_in.is_admin:
        raise NotFound("there is no relay package to download here")
    if alexa.unreachable is not None:
        url = request.config_dict[SETTINGS_KEY].public_url
        raise Conflict(
            f"the relay would forward to {url}, and {alexa.unreachable}: Amazon's Lambda "
            "needs an https address it can reach. Set server.public_url to it (step 1) and "
            "download the package again"
        )
    return web.Response(
        body=alexa.lambda_zip(),
        content_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="staterelay-alexa.zip"',
            "Cache-Control": "no-store",
        },
    )


# the set-up page ------------------------------------------------------------------------------
@routes.get(SETUP_PATH, name="guide_alexa")
async def alexa_guide(request: web.Request) -> web.StreamResponse:
    """The ten steps from nothing to a Routine that starts on a switch."""
    signed_in, principal = await require_principal(request)
    return await _alexa_page(
        request, signed_in, principal, notice=NOTICES.get(request.query.get("done", ""))
    )


async def _alexa_page(
    request: web.Request,
    signed_in: SignedIn,
    principal: Principal,
    *,
    notice: str | None = None,
    result: tuple[bool, str] | None = None,
    new_client_secret: str | None = None,
    errors: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    alexa = request.config_dict[ALEXA_KEY]
    grants, clients = await _alexa_grants(core, principal)
    link = await core.alexa.status(principal)
    messaging = await core.alexa.messaging()
    devices = await all_devices(core, principal)
    steps: list[GuideStep] = []
    if alexa.self_service:
        plan = SetupPlan(
            clients=alexa_clients(settings, clients),
            relay_secret=alexa.relay_secret,
            relay_secret_from_config=bool(settings.alexa.relay_secret),
            new_client_secret=new_client_secret,
            messaging_configured=messaging is not None,
        )
        seen = AlexaProgress(
            relay_seen=await core.facts.first_seen(ALEXA_RELAY_SEEN) is not None,
            linked=bool(grants),
            accept_grant=link.linked,
            routine_switch=any(
                d.type == "switch" and d.options.get("routine_trigger") for d in devices
            ),
            report_accepted=await core.facts.first_seen(ALEXA_CHANGE_REPORT_SEEN) is not None,
        )
        steps = setup_steps(settings, plan, seen)
        if signed_in.is_admin:
            steps = [_with_relay_secret(step, alexa.relay_secret) for step in steps]
    return render(
        request,
        "guide.html",
        {
            "nav": "integrations",
            "page": "alexa",
            "title": "Set up Alexa",
            "lead": "Ten steps from nothing to an Alexa Routine that starts on a switch. Each "
            "step gets its tick once StateRelay has seen it happen.",
            "steps": steps,
            "is_admin": signed_in.is_admin,
            "hosted": not alexa.self_service,
            "unreachable": alexa.unreachable if alexa.self_service else None,
            "messaging_from_config": messaging is not None and messaging.from_config,
            "notice": notice,
            "result": result,
            "errors": errors or {},
            "form": form or {},
        },
        status=status,
    )


def _with_relay_secret(step: GuideStep, relay_secret: str) -> GuideStep:
    if step.key != "lambda":
        return step
    value = GuideValue(
        "Relay secret",
        relay_secret,
        secret=True,
        note="baked into the package; STATERELAY_RELAY_SECRET for a package built without it",
    )
    return GuideStep(
        key=step.key,
        title=step.title,
        text=step.text,
        values=(*step.values, value),
        links=step.links,
        done=step.done,
        done_text=step.done_text,
        extra=step.extra,
    )


@routes.post(f"{SETUP_PATH}/client", name="guide_alexa_client")
async def alexa_register(request: web.Request) -> web.StreamResponse:
    """Register the OAuth client the skill links through, for the vendor id typed in."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await require_principal(request)
    if not signed_in.is_admin:
        raise Forbidden("only an admin can register the Alexa skill")
    core = request.config_dict[CORE_KEY]
    vendor_id = form.get("vendor_id", "").strip()
    try:
        preset = alexa_preset(vendor_id)
        for client in await core.oauth.list_clients():
            if set(preset.redirect_uris) <= set(client.redirect_uris):
                raise InvalidInput(
                    f"the client {client.id} is registered for this vendor id already; its "
                    "values are in step 5",
                    field="vendor_id",
                )
        _, secret = await core.oauth.create_client(
            client_id=f"alexa-{secrets.token_hex(4)}",
            name=preset.name,
            redirect_uris=preset.redirect_uris,
            token_endpoint_auth_method=preset.token_endpoint_auth_method,
            scopes=preset.scopes,
        )
    except InvalidInput as error:
        errors = {"vendor_id": _sentence(error.detail)}
        return await _alexa_page(
            request, signed_in, principal, errors=errors, form=form, status=422
        )
    return await _alexa_page(request, signed_in, principal, new_client_secret=secret)


@routes.post(f"{SETUP_PATH}/messaging", name="guide_alexa_messaging")
async def alexa_messaging(request: web.Request) -> web.StreamResponse:
    """Keep the skill's Send Alexa Events client id and secret (no restart needed)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await require_principal(request)
    if not signed_in.is_admin:
        raise Forbidden("only an admin can set the Alexa messaging client")
    try:
        await request.config_dict[CORE_KEY].alexa.save_messaging(
            principal, form.get("client_id", ""), form.get("client_secret", "")
        )
    except InvalidInput as error:
        return await _alexa_page(
            request, signed_in, principal, errors=field_errors(error), form=form, status=422
        )
    raise web.HTTPSeeOther(location=f"{SETUP_PATH}?done=messaging#step-events")


@routes.post(f"{SETUP_PATH}/test", name="guide_alexa_test")
async def alexa_test(request: web.Request) -> web.StreamResponse:
    """Send Alexa a test event now and show its answer."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await require_principal(request)
    alexa = request.config_dict[ALEXA_KEY]
    if not alexa.self_service:
        result = (False, "Alexa is set up by the operator of this instance.")
    else:
        result = await alexa.send_test(principal)
    return await _alexa_page(request, signed_in, principal, result=result)


def _sentence(detail: str) -> str:
    text = detail[:1].upper() + detail[1:]
    return text if text.endswith(".") else text + "."
