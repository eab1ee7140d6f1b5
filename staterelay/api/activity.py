"""Activity routes: the household's log and one device's log, newest first."""

from __future__ import annotations

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.params import page_params
from staterelay.api.responses import json_response
from staterelay.api.serializers import activity_json, page_json
from staterelay.app.appkeys import CORE_KEY

routes = web.RouteTableDef()


@routes.get("/activity", name="activity", allow_head=False)
async def list_activity(request: web.Request) -> web.Response:
    """The household's activity, optionally for one device or one source."""
    params = page_params(request)
    page = await request.app[CORE_KEY].activity.list(
        principal_of(request),
        device_id=request.query.get("device_id") or None,
        source=request.query.get("source") or None,
        cursor=params.cursor,
        limit=params.limit,
    )
    return json_response(page_json(page, activity_json))


@routes.get("/devices/{device_id}/activity", name="device_activity", allow_head=False)
async def device_activity(request: web.Request) -> web.Response:
    """One device's activity; 404 when the household has no such device."""
    params = page_params(request)
    page = await request.app[CORE_KEY].activity.list(
        principal_of(request),
        device_id=request.match_info["device_id"],
        source=request.query.get("source") or None,
        cursor=params.cursor,
        limit=params.limit,
        require_device=True,
    )
    return json_response(page_json(page, activity_json))
