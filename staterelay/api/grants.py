"""The caller's linked apps (OAuth grants): ``/grants``."""

from __future__ import annotations

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.responses import json_response, no_content
from staterelay.api.serializers import grant_json
from staterelay.app.appkeys import CORE_KEY

routes = web.RouteTableDef()


@routes.get("/grants", name="grants", allow_head=False)
async def list_grants(request: web.Request) -> web.Response:
    """The apps (Alexa, IFTTT, ...) the caller's user has linked, newest first."""
    apps = await request.app[CORE_KEY].oauth.list_grants(principal_of(request))
    return json_response({"items": [grant_json(app) for app in apps], "next_cursor": None})


@routes.delete("/grants/{grant_id}", name="grant")
async def revoke_grant(request: web.Request) -> web.Response:
    """Unlink one app: its access and refresh tokens stop working at once."""
    await request.app[CORE_KEY].oauth.revoke_grant(
        principal_of(request), request.match_info["grant_id"]
    )
    return no_content()
