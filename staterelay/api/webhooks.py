"""Webhook routes: endpoints, a test send and delivery history."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.bodies import FieldSpec, read_fields
from staterelay.api.params import page_params
from staterelay.api.responses import json_response, no_content
from staterelay.api.serializers import delivery_json, page_json, webhook_json
from staterelay.app.appkeys import CORE_KEY

routes = web.RouteTableDef()

_OPTIONAL_FIELDS: Final = {
    "description": FieldSpec(("string", "null")),
    "device_ids": FieldSpec(("array", "null"), items="string"),
    "event_types": FieldSpec(("array", "null"), items="string"),
    "enabled": FieldSpec(("boolean",)),
    "format": FieldSpec(("string",)),
    "ifttt_event": FieldSpec(("string", "null")),
    "ifttt_key": FieldSpec(("string", "null")),
}
# url may be left out for format ifttt_webhooks (IFTTT's own URL); core checks the rest.
CREATE_FIELDS: Final = {"url": FieldSpec(("string",)), **_OPTIONAL_FIELDS}
UPDATE_FIELDS: Final = {"url": FieldSpec(("string",)), **_OPTIONAL_FIELDS}


@routes.get("/webhooks", name="webhooks", allow_head=False)
async def list_webhooks(request: web.Request) -> web.Response:
    """The household's webhooks (never their secrets)."""
    params = page_params(request)
    page = await request.app[CORE_KEY].webhooks.list(
        principal_of(request), cursor=params.cursor, limit=params.limit
    )
    return json_response(page_json(page, webhook_json))


@routes.post("/webhooks", name="webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    """Create a webhook; the answer carries its signing secret, this once."""
    fields = await read_fields(request, CREATE_FIELDS)
    webhook, secret = await request.app[CORE_KEY].webhooks.create(principal_of(request), fields)
    location = request.app.router["webhook"].url_for(webhook_id=webhook.id)
    return json_response(webhook_json(webhook, secret=secret), status=201, location=str(location))


@routes.get("/webhooks/{webhook_id}", name="webhook", allow_head=False)
async def get_webhook(request: web.Request) -> web.Response:
    """One webhook."""
    webhook = await request.app[CORE_KEY].webhooks.get(
        principal_of(request), request.match_info["webhook_id"]
    )
    return json_response(webhook_json(webhook))


@routes.patch("/webhooks/{webhook_id}", name="webhook")
async def update_webhook(request: web.Request) -> web.Response:
    """Change a webhook's URL, filters, description, format or enabled flag."""
    fields = await read_fields(request, UPDATE_FIELDS)
    webhook = await request.app[CORE_KEY].webhooks.update(
        principal_of(request), request.match_info["webhook_id"], fields
    )
    return json_response(webhook_json(webhook))


@routes.delete("/webhooks/{webhook_id}", name="webhook")
async def delete_webhook(request: web.Request) -> web.Response:
    """Delete a webhook and what is queued for it."""
    await request.app[CORE_KEY].webhooks.delete(
        principal_of(request), request.match_info["webhook_id"]
    )
    return no_content()


@routes.post("/webhooks/{webhook_id}/test", name="webhook_test")
async def send_test(request: web.Request) -> web.Response:
    """Queue a ``webhook.test`` event for this webhook; delivery happens in the background."""
    webhook_id = request.match_info["webhook_id"]
    await request.app[CORE_KEY].webhooks.send_test(principal_of(request), webhook_id)
    return json_response(
        {"webhook_id": webhook_id, "event_type": "webhook.test", "status": "queued"}, status=202
    )


@routes.get("/webhooks/{webhook_id}/deliveries", name="webhook_deliveries", allow_head=False)
async def list_deliveries(request: web.Request) -> web.Response:
    """A webhook's delivery attempts, newest first."""
    params = page_params(request)
    page = await request.app[CORE_KEY].webhooks.deliveries(
        principal_of(request),
        request.match_info["webhook_id"],
        cursor=params.cursor,
        limit=params.limit,
    )
    return json_response(page_json(page, delivery_json))
