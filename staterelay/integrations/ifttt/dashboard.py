"""IFTTT on the dashboard: its card, the guided set-up page and unlinking.

Two ways in: IFTTT's Webhooks service (a key, no service: an ``ifttt_webhooks`` webhook),
or StateRelay as an IFTTT service (its OAuth grant, trigger identities and Realtime).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.integration import Card, CardFacts
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.household import webhook_rows, worst_health
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.core import Core
from staterelay.core.errors import NotFound
from staterelay.core.facts import IFTTT_STATUS_SEEN
from staterelay.core.guide import GuideStep, GuideValue
from staterelay.core.oauth import LinkedApp, OAuthClient
from staterelay.core.oauth_clients import is_ifttt_client, issuer_url
from staterelay.core.records import Principal
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS
from staterelay.settings import Settings

SETUP_PATH: Final = "/dashboard/integrations/ifttt"
NOTICES: Final = {
    "tested": "A test event is on its way: its delivery shows in a moment (reload the page).",
}

routes = web.RouteTableDef()


def _ifttt_clients(clients: Sequence[OAuthClient], settings: Settings) -> list[OAuthClient]:
    """The IFTTT service's clients (by configured id, scope or redirect URL)."""
    return [client for client in clients if is_ifttt_client(client, settings.ifttt.client_id)]


def _grants_of(grants: Sequence[LinkedApp], clients: Sequence[OAuthClient]) -> list[LinkedApp]:
    ids = {client.id for client in clients}
    return [grant for grant in grants if grant.client_id in ids]


async def _ifttt_grants(
    core: Core, settings: Settings, principal: Principal
) -> tuple[list[LinkedApp], list[OAuthClient]]:
    """The user's grants to IFTTT's service, and the OAuth clients registered for it."""
    clients = _ifttt_clients(await core.oauth.list_clients(), settings)
    return _grants_of(await core.oauth.list_grants(principal), clients), clients


# the card -------------------------------------------------------------------------------------
async def card_view(facts: CardFacts) -> dict[str, Any]:
    """IFTTT's link, how many triggers it watches, and the Webhooks route's health."""
    core = facts.core
    clients = _ifttt_clients(facts.clients, facts.settings)
    grants = _grants_of(facts.grants, clients)
    configured = core.ifttt.configured
    identities = [
        identity
        for identity in await core.ifttt.identities(facts.principal)
        if identity.deleted_at is None
    ]
    maker = [row for row in facts.webhooks if row["format"] == IFTTT_WEBHOOKS]
    linked = bool(grants)
    if linked:
        state, label = "linked", "Linked"
    elif maker:
        worst = worst_health(maker)
        state = worst["state"]
        label = "Webhooks · " + worst["label"].lower()
    elif not configured and not clients:
        state, label = "unavailable", "Not set up"
    else:
        state, label = "off", "Not linked"
    return {
        "state": state,
        "label": label,
        "linked": linked,
        "configured": configured,
        "grants": grants,
        "triggers": len(identities),
        "webhooks": maker,
    }


CARD: Final = Card(
    key="ifttt",
    title="IFTTT",
    name="IFTTT",
    icon="ifttt",
    view=card_view,
    template="cards/ifttt.html",
    setup_path=SETUP_PATH,
    notices={
        "ifttt-unlinked": "IFTTT is unlinked. Its Applets stop working until you connect again."
    },
)


@routes.post("/dashboard/integrations/ifttt/unlink", name="ifttt_unlink")
async def unlink_ifttt(request: web.Request) -> web.StreamResponse:
    """Revoke the grant IFTTT's service holds."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    grants, _ = await _ifttt_grants(core, request.config_dict[SETTINGS_KEY], principal)
    if not grants:
        raise NotFound("IFTTT is not linked")
    for grant in grants:
        await core.oauth.revoke_grant(principal, grant.grant_id)
    raise web.HTTPSeeOther(location="/dashboard/integrations?done=ifttt-unlinked")


# the set-up page ------------------------------------------------------------------------------
@routes.get(SETUP_PATH, name="guide_ifttt")
async def ifttt_guide(request: web.Request) -> web.StreamResponse:
    """Two ways in: IFTTT's Webhooks service (a key), or StateRelay as an IFTTT service."""
    signed_in, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    grants, clients = await _ifttt_grants(core, settings, principal)
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
            done=bool(clients),
            done_text="the IFTTT client is registered",
        ),
        GuideStep(
            key="service-connect",
            title="Connect",
            text="In IFTTT, connect your StateRelay service and allow access here.",
            done=bool(grants),
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
    sections: Sequence[tuple[str, Sequence[GuideStep]]] = [
        ("IFTTT Webhooks (a key, no service)", maker),
        ("An IFTTT service", service),
    ]
    context: Mapping[str, Any] = {
        "nav": "integrations",
        "page": "ifttt",
        "title": "Set up IFTTT",
        "lead": "The Webhooks route needs only a key from IFTTT (IFTTT Pro). Running "
        "StateRelay as an IFTTT service gives typed triggers and device dropdowns.",
        "sections": sections,
        "steps": [],
        "ifttt_hooks": rows,
        "is_admin": signed_in.is_admin,
        "notice": NOTICES.get(request.query.get("done", "")),
        "errors": {},
        "form": {},
    }
    return render(request, "guide.html", context)
