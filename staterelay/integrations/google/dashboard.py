"""Google Home on the dashboard and the API: its card, the guided set-up page, unlinking, and
``GET /api/v1/integrations/google``.

The card and the API show the signed-in user's link (linked since, last SYNC, the last
Report State and Request Sync results, or why the link ended); the guided page shows the
steps of docs/google.md with this instance's values, each ticked once StateRelay saw it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.integration import Card, CardFacts
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render, when
from staterelay.core.clock import iso
from staterelay.core.errors import Forbidden, NotAuthenticated, NotFound
from staterelay.core.oauth_clients import is_google_client
from staterelay.core.records import Principal
from staterelay.integrations.google.console import GoogleProgress, google_clients, setup_steps
from staterelay.integrations.google.links import UNLINKED_IN_STATERELAY, GoogleLinks
from staterelay.integrations.google.serviceaccount import KeyFileError, ServiceAccount, key_path
from staterelay.settings import Settings

SETUP_PATH: Final = "/dashboard/integrations/google"
API_PATH: Final = "/api/v1/integrations/google"
LINKS_KEY: Final = web.AppKey("staterelay.integrations.google.links", GoogleLinks)


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One user's Google Home link: since when, the last SYNC and Home Graph results."""

    linked: bool
    agent_user_id: str
    linked_at: float | None
    last_sync_at: float | None
    report: Mapping[str, Any] | None
    sync: Mapping[str, Any] | None
    unlinked_at: float | None
    unlinked_reason: str | None

    @property
    def report_failed(self) -> bool:
        """True when the last Report State was not accepted."""
        return self.report is not None and bool(self.report["error"])


async def link_status(links: GoogleLinks, principal: Principal) -> LinkStatus:
    """The user's link as kept, with results not written yet."""
    record = await links.link(principal.tenant_id, principal.user_id)
    data: dict[str, Any] = dict(record.data) if record is not None else {}
    data.update(links.pending(principal.tenant_id, principal.user_id))
    gone = None if record is not None else await links.gone(principal.tenant_id, principal.user_id)

    def result(kind: str) -> dict[str, Any] | None:
        if data.get(f"last_{kind}_at") is None:
            return None
        return {
            "at": data[f"last_{kind}_at"],
            "status_code": data.get(f"last_{kind}_status"),
            "error": data.get(f"last_{kind}_error"),
        }

    return LinkStatus(
        linked=record is not None,
        agent_user_id=principal.user_id,
        linked_at=data.get("linked_at"),
        last_sync_at=data.get("last_sync_at"),
        report=result("report"),
        sync=result("sync"),
        unlinked_at=gone.data.get("at") if gone is not None else None,
        unlinked_reason=gone.data.get("reason") if gone is not None else None,
    )


def status_json(status: LinkStatus, settings: Settings) -> dict[str, Any]:
    """The JSON of ``GET /api/v1/integrations/google``."""

    def result(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else {**value, "at": iso(value["at"])}

    return {
        "linked": status.linked,
        "agent_user_id": status.agent_user_id,
        "linked_at": iso(status.linked_at),
        "last_sync_intent_at": iso(status.last_sync_at),
        "report_state_configured": settings.google.service_account_file is not None,
        "last_report_state": result(status.report),
        "last_request_sync": result(status.sync),
        "unlinked_at": iso(status.unlinked_at),
        "unlinked_reason": status.unlinked_reason,
    }


def key_readable(settings: Settings) -> bool | None:
    """True when the configured key file is a readable service account key; None unset."""
    path = key_path(settings)
    if path is None:
        return None
    try:
        ServiceAccount.load(path)
    except KeyFileError:
        return False
    return True


# the API --------------------------------------------------------------------------------------
async def api_status(request: web.Request) -> web.Response:
    """``GET /api/v1/integrations/google``: the caller's link, last SYNC and last results."""
    core = request.config_dict[CORE_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise NotAuthenticated("a bearer token is required")
    principal = await core.auth.authenticate(token.strip())
    if not principal.can("read"):
        raise Forbidden("this credential may not read")
    settings = request.config_dict[SETTINGS_KEY]
    status = await link_status(request.config_dict[LINKS_KEY], principal)
    return web.json_response(status_json(status, settings))


# the card -------------------------------------------------------------------------------------
async def card_view(facts: CardFacts) -> dict[str, Any]:
    """The link's health and the last report, for the card and the chip."""
    status = await link_status(facts.request.config_dict[LINKS_KEY], facts.principal)
    clients = google_clients(facts.clients)
    ids = {client.id for client in clients}
    granted = any(grant.client_id in ids for grant in facts.grants)
    problems = []
    if status.report_failed and status.report is not None:
        problems.append(f"The last Report State failed: {status.report['error']}")
    if status.linked and facts.settings.google.service_account_file is None:
        problems.append("No service account key: Google learns of changes only when it asks.")
    shown: list[tuple[str, str]] = []
    if status.linked:
        state = "attention" if problems else "linked"
        label = "Linked"
        shown.append(("Last SYNC", when(status.last_sync_at)))
        if status.report is not None:
            result = "failed" if status.report_failed else "accepted"
            shown.append(("Last Report State", f"{result} {when(status.report['at'])}"))
    elif status.unlinked_reason:
        state, label = "off", "Unlinked"
        problems.append(f"Unlinked {when(status.unlinked_at)}: {status.unlinked_reason}")
    elif granted:
        state, label = "attention", "Waiting for Google's SYNC"
    elif not clients:
        state, label = "unavailable", "Not set up"
    else:
        state, label = "off", "Not linked"
    return {
        "state": state,
        "label": label,
        "detail": problems[0] if problems else None,
        "text": " ".join(problems)
        or "Your devices in the Google Home app, by voice, and as starters of Google Home "
        "automations.",
        "facts": shown,
    }


CARD: Final = Card(
    key="google",
    title="Google Home",
    name="Google Home",
    icon="google",
    view=card_view,
    setup_path=SETUP_PATH,
    notices={"google-unlinked": "Google Home is unlinked: nothing more is sent to Google."},
)


# the set-up page ------------------------------------------------------------------------------
async def google_guide(request: web.Request) -> web.StreamResponse:
    """The counted steps with this instance's values and what StateRelay has seen."""
    signed_in, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    settings = request.config_dict[SETTINGS_KEY]
    links = request.config_dict[LINKS_KEY]
    clients = google_clients(await core.oauth.list_clients())
    status = await link_status(links, principal)
    progress = GoogleProgress(
        client_registered=bool(clients),
        key_readable=key_readable(settings),
        synced=status.last_sync_at is not None,
        report_accepted=status.report is not None and not status.report_failed,
    )
    context: Mapping[str, Any] = {
        "nav": "integrations",
        "page": "google",
        "title": "Set up Google Home",
        "lead": "Eight steps from nothing to a StateRelay switch that starts a Google Home "
        "automation. Values are this server's; each step is ticked once StateRelay saw it.",
        "steps": setup_steps(settings, clients, progress),
        "is_admin": signed_in.is_admin,
        "notice": None,
        "errors": {},
        "form": {},
    }
    return render(request, "guide.html", context)


async def unlink_google(request: web.Request) -> web.StreamResponse:
    """Revoke the user's grants to Google Home's client (the link ends with them)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    ids = {c.id for c in await core.oauth.list_clients() if is_google_client(c)}
    grants = [g for g in await core.oauth.list_grants(principal) if g.client_id in ids]
    links = request.config_dict[LINKS_KEY]
    ended = await links.end(principal.tenant_id, principal.user_id, UNLINKED_IN_STATERELAY)
    if not grants and not ended:
        raise NotFound("Google Home is not linked")
    for grant in grants:
        await core.oauth.revoke_grant(principal, grant.grant_id)
    raise web.HTTPSeeOther(location="/dashboard/integrations?done=google-unlinked")


routes: Final = (
    web.get(SETUP_PATH, google_guide, name="guide_google", allow_head=False),
    web.post(f"{SETUP_PATH}/unlink", unlink_google, name="google_unlink"),
    web.get(API_PATH, api_status, name="integration-google", allow_head=False),
)
