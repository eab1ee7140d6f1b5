"""The integrations page and the dashboard's chips: every integration's card, in registry order.

The cards come from the integrations themselves (``Parts.cards``, under ``CARDS_KEY``); the
page reads what most of them want once (OAuth clients and grants, the webhooks with their
health) and asks each card for its values. The form to add a webhook sits in the webhooks
card; its handler (``staterelay.ui.webhooks``) renders this page again with its errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.integration import CARDS_KEY, Card, CardFacts
from staterelay.browser.household import (
    EVENT_LABELS,
    FORMAT_LABELS,
    all_devices,
    webhook_rows,
)
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.core.records import Principal
from staterelay.core.webhook_formats import FORMATS
from staterelay.core.webhooks import EVENT_TYPES

NOTICES: Final = {"webhook-deleted": "The webhook was deleted."}

routes = web.RouteTableDef()


async def card_facts(request: web.Request, principal: Principal) -> CardFacts:
    """What the cards share, read once: OAuth clients and grants, the webhooks as rows."""
    core = request.config_dict[CORE_KEY]
    return CardFacts(
        request=request,
        principal=principal,
        clients=await core.oauth.list_clients(),
        grants=await core.oauth.list_grants(principal),
        webhooks=await webhook_rows(request, principal),
    )


async def card_views(
    request: web.Request, principal: Principal
) -> list[tuple[Card, Mapping[str, Any]]]:
    """Every card of the application with its values, in registry order (the dashboard's
    chips show each one's state, label and detail)."""
    facts = await card_facts(request, principal)
    return [(card, await card.view(facts)) for card in request.config_dict[CARDS_KEY]]


@routes.get("/dashboard/integrations", name="integrations")
async def integrations(request: web.Request) -> web.StreamResponse:
    """Every integration: what is linked, how it fares, and how to set it up."""
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
    cards = await card_views(request, principal)
    notices = {**NOTICES, **{k: v for card, _ in cards for k, v in card.notices.items()}}
    devices = await all_devices(core, principal)
    return render(
        request,
        "integrations.html",
        {
            "nav": "integrations",
            "notice": notices.get(notice or ""),
            "cards": cards,
            "is_admin": is_admin,
            "devices": [{"id": device.id, "name": device.name} for device in devices],
            "event_types": [(name, EVENT_LABELS.get(name, name)) for name in EVENT_TYPES],
            "formats": [(name, FORMAT_LABELS.get(name, name)) for name in FORMATS],
            "form": form or {"format": "standard"},
            "open_form": open_form,
            "errors": errors or {},
        },
        status=status,
    )
