"""Guided set-up pages for Alexa, IFTTT and webhooks: numbered steps, values, checks.

Each step shows the values it needs, each in its own field with a copy button, and a check
once StateRelay has seen the step happen (a client registered, the relay or IFTTT reaching
the server, the account linked, the first event accepted or delivered). Every form on them
is a plain POST answered with the page again, so they work without JavaScript; only the
copy buttons need it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.core.errors import Forbidden, InvalidInput, StateRelayError
from staterelay.core.facts import ALEXA_RELAY_SEEN, IFTTT_STATUS_SEEN
from staterelay.core.guide import GuideStep, GuideValue
from staterelay.core.oauth_clients import alexa_preset, issuer_url
from staterelay.core.records import Principal
from staterelay.core.sessions import SignedIn
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS
from staterelay.ui.devices import all_devices
from staterelay.ui.forms import field_errors
from staterelay.ui.integrations import (
    ALEXA_TOOLS_KEY,
    GuideProgress,
    links,
    webhook_rows,
)

ALEXA_PATH: Final = "/dashboard/integrations/alexa"
IFTTT_PATH: Final = "/dashboard/integrations/ifttt"
WEBHOOKS_PATH: Final = "/dashboard/integrations/webhooks"
NOTICES: Final = {
    "messaging": "Saved. StateRelay uses them from now on; no restart is needed.",
    "tested": "A test event is on its way: its delivery shows in a moment (reload the page).",
}

routes = web.RouteTableDef()


# Alexa ---------------------------------------------------------------------------------------
@routes.get(ALEXA_PATH, name="guide_alexa")
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
    tools = request.config_dict.get(ALEXA_TOOLS_KEY)
    found = await links(core, settings, principal)
    link = await core.alexa.status(principal)
    messaging = await core.alexa.messaging()
    devices = await all_devices(core, principal)
    progress = GuideProgress(
        messaging=messaging is not None,
        new_client_secret=new_client_secret,
        relay_seen=await core.facts.first_seen(ALEXA_RELAY_SEEN) is not None,
        linked=bool(found.alexa),
        accept_grant=link.linked,
        routine_switch=any(
            d.type == "switch" and d.options.get("routine_trigger") for d in devices
        ),
        report_accepted=link.last_report_status is not None and link.last_report_status < 300,
    )
    steps = tools.guide(found.alexa_clients, progress) if tools is not None else []
    if tools is not None and signed_in.is_admin:
        steps = [_with_relay_secret(step, tools.relay_secret) for step in steps]
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
            "hosted": tools is None,
            "unreachable": tools.unreachable if tools is not None else None,
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


@routes.post(f"{ALEXA_PATH}/client", name="guide_alexa_client")
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


@routes.post(f"{ALEXA_PATH}/messaging", name="guide_alexa_messaging")
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
    raise web.HTTPSeeOther(location=f"{ALEXA_PATH}?done=messaging#step-events")


@routes.post(f"{ALEXA_PATH}/test", name="guide_alexa_test")
async def alexa_test(request: web.Request) -> web.StreamResponse:
    """Send Alexa a test event now and show its answer."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in, principal = await require_principal(request)
    tools = request.config_dict.get(ALEXA_TOOLS_KEY)
    if tools is None:
        result = (False, "Alexa is set up by the operator of this instance.")
    else:
        result = await tools.send_test(principal)
    return await _alexa_page(request, signed_in, principal, result=result)


# IFTTT ---------------------------------------------------------------------------------------
@routes.get(IFTTT_PATH, name="guide_ifttt")
async def ifttt_guide(request: web.Request) -> web.StreamResponse:
    """Two ways in: IFTTT's Webhooks service (a key), or StateRelay as an IFTTT service."""
    signed_in, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    found = await links(core, settings, principal)
    rows = [
        row for row in await webhook_rows(request, principal) if row["format"] == IFTTT_WEBHOOKS
    ]
    delivered = any(row["health"]["state"] == "linked" for row in rows)
    identities = [i for i in await core.ifttt.identities(principal) if i.deleted_at is None]
    auth = issuer_url(settings.public_url, settings.server.hosts.auth)
    service = [
        GuideStep(
            key="service-key",
            title="The service key",
            text="On platform.ifttt.com create a service; copy its Service Key into StateRelay's "
            "config as ifttt.service_key and restart StateRelay.",
            done=core.ifttt.configured,
            done_text="ifttt.service_key is set",
            links=(("IFTTT Platform", "https://platform.ifttt.com"),),
        ),
        GuideStep(
            key="service-api",
            title="API URL",
            text="On the service's API page, enter this as the IFTTT API URL. IFTTT checks it "
            "with a status request carrying the service key.",
            values=(GuideValue("IFTTT API URL", settings.public_url),),
            done=await core.facts.first_seen(IFTTT_STATUS_SEEN) is not None,
            done_text="IFTTT's status check passed",
        ),
        GuideStep(
            key="service-auth",
            title="Authentication",
            text="Register the OAuth client on this server (staterelay client create --preset "
            "ifttt --service-id YOUR_SERVICE_ID prints its id and secret), then paste these "
            "on the service's Authentication page (OAuth2, credentials in the request body).",
            values=(
                GuideValue("Authorization URL", f"{auth}/oauth/authorize"),
                GuideValue("Token URL", f"{auth}/oauth/token"),
                GuideValue("Scope", "ifttt"),
            ),
            done=bool(found.ifttt_clients),
            done_text="the IFTTT client is registered",
        ),
        GuideStep(
            key="service-connect",
            title="Connect",
            text="In IFTTT, connect your StateRelay service and allow access here.",
            done=bool(found.ifttt),
            done_text="your account is linked",
        ),
        GuideStep(
            key="service-applet",
            title="An Applet",
            text="Make an Applet with one of StateRelay's triggers. IFTTT then asks StateRelay "
            "for new events, and a change here starts it within seconds.",
            done=bool(identities),
            done_text="IFTTT has asked for events",
        ),
    ]
    maker = [
        GuideStep(
            key="maker-key",
            title="Your Webhooks key",
            text="Sign in to IFTTT and open the Webhooks service's Documentation page: it shows "
            "your key (it works for your whole IFTTT account; keep it private).",
            links=(("IFTTT Webhooks", "https://ifttt.com/maker_webhooks"),),
        ),
        GuideStep(
            key="maker-webhook",
            title="Add an IFTTT Webhooks webhook",
            text="Choose an event name (letters, digits and _), paste the key, and pick the "
            "devices it is for.",
            done=bool(rows),
            done_text="an IFTTT Webhooks webhook exists",
        ),
        GuideStep(
            key="maker-applet",
            title="The Applet",
            text="In IFTTT: Create > If This > Webhooks > Receive a web request, with the same "
            "event name. Value1 is the device, Value2 what changed, Value3 the new value.",
        ),
        GuideStep(
            key="maker-test",
            title="Send a test event",
            text="IFTTT answers each event; the answer shows here and on the webhook's page.",
            done=delivered,
            done_text="IFTTT accepted an event",
        ),
    ]
    return render(
        request,
        "guide.html",
        {
            "nav": "integrations",
            "page": "ifttt",
            "title": "Set up IFTTT",
            "lead": "The Webhooks route needs only a key from IFTTT (IFTTT Pro). Running "
            "StateRelay as an IFTTT service gives typed triggers and device dropdowns.",
            "sections": [
                ("IFTTT Webhooks (a key, no service)", maker),
                ("An IFTTT service", service),
            ],
            "steps": [],
            "ifttt_hooks": rows,
            "is_admin": signed_in.is_admin,
            "notice": NOTICES.get(request.query.get("done", "")),
            "errors": {},
            "form": {},
        },
    )


# webhooks ------------------------------------------------------------------------------------
@routes.get(WEBHOOKS_PATH, name="guide_webhooks")
async def webhooks_guide(request: web.Request) -> web.StreamResponse:
    """A signed webhook to your own server, from a URL to a delivered test event."""
    signed_in, principal = await require_principal(request)
    rows = [
        row for row in await webhook_rows(request, principal) if row["format"] != IFTTT_WEBHOOKS
    ]
    delivered = any(row["health"]["state"] == "linked" for row in rows)
    steps = [
        GuideStep(
            key="receiver",
            title="A receiver",
            text="Something on your side that takes a POST with a JSON body: a Home Assistant "
            "webhook trigger, a Node-RED http-in node, a small script. Note its URL. "
            "Addresses on your own network are refused unless webhooks.allow_private_networks "
            "or webhooks.allowed_networks allow them.",
        ),
        GuideStep(
            key="add",
            title="Add the webhook",
            text="Choose the events and devices; StateRelay shows its signing secret once.",
            done=bool(rows),
            done_text="a webhook exists",
        ),
        GuideStep(
            key="verify",
            title="Check the signature",
            text="Each delivery carries webhook-id, webhook-timestamp and webhook-signature "
            "(Standard Webhooks). Verify them with the secret, e.g. in Python:",
            values=(
                GuideValue("Python", 'Webhook("whsec_...").verify(request_body, request_headers)'),
                GuideValue("Install", "pip install standardwebhooks"),
            ),
        ),
        GuideStep(
            key="test",
            title="Send a test event",
            text="A webhook.test event goes out now; failed deliveries are retried for up to "
            "three days, and each attempt is listed on the webhook's page.",
            done=delivered,
            done_text="a delivery succeeded",
        ),
    ]
    return render(
        request,
        "guide.html",
        {
            "nav": "integrations",
            "page": "webhooks",
            "title": "Set up a webhook",
            "lead": "Every change, POSTed as signed JSON to a URL of yours.",
            "steps": steps,
            "hooks": rows,
            "is_admin": signed_in.is_admin,
            "notice": NOTICES.get(request.query.get("done", "")),
            "errors": {},
            "form": {},
        },
    )


def guide_links() -> Sequence[tuple[str, str]]:
    """The guide pages, for the integrations overview."""
    return (("alexa", ALEXA_PATH), ("ifttt", IFTTT_PATH), ("webhooks", WEBHOOKS_PATH))


def _sentence(detail: str) -> str:
    text = detail[:1].upper() + detail[1:]
    return text if text.endswith(".") else text + "."


def error_text(error: StateRelayError) -> dict[str, Any]:
    """A domain error for the page's alert."""
    return {"form": _sentence(error.detail)}
