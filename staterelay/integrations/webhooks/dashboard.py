"""Webhooks on the dashboard: their card (the list, with the form to add one) and the guided
set-up page.

Webhooks themselves are core's (``core.webhooks``); the dashboard's pages of one webhook and
its form handlers are the UI's (``staterelay.ui.webhooks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from staterelay.app.integration import Card, CardFacts
from staterelay.browser.household import webhook_rows, worst_health
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.core.guide import GuideStep, GuideValue
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS

SETUP_PATH: Final = "/dashboard/integrations/webhooks"
NOTICES: Final = {
    "tested": "A test event is on its way: its delivery shows in a moment (reload the page).",
}

routes = web.RouteTableDef()


# the card -------------------------------------------------------------------------------------
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


async def card_view(facts: CardFacts) -> dict[str, Any]:
    """Every webhook with its health, and their worst health for the chip."""
    return {**webhooks_summary(facts.webhooks), "rows": facts.webhooks}


CARD: Final = Card(
    key="webhooks",
    title="Webhooks",
    name="Webhooks",
    icon="webhook",
    view=card_view,
    template="cards/webhooks.html",
    setup_path=SETUP_PATH,
    wide=True,
)


# the set-up page ------------------------------------------------------------------------------
@routes.get(SETUP_PATH, name="guide_webhooks")
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
