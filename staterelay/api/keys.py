"""The caller's identity and API keys: ``/me`` and ``/keys``."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.bodies import FieldSpec, read_fields
from staterelay.api.responses import json_response, no_content
from staterelay.api.serializers import api_key_json, me_json
from staterelay.app.appkeys import CORE_KEY
from staterelay.core.errors import NotAuthenticated, NotFound

routes = web.RouteTableDef()

CREATE_FIELDS: Final = {
    "name": FieldSpec(("string",), required=True),
    "scope": FieldSpec(("string",), required=True),
    "device_ids": FieldSpec(("array", "null"), items="string"),
}


@routes.get("/me", name="me", allow_head=False)
async def me(request: web.Request) -> web.Response:
    """Who the credential belongs to and what it may do."""
    principal = principal_of(request)
    try:
        user = await request.app[CORE_KEY].users.get(principal.tenant_id, principal.user_id)
    except NotFound:
        raise NotAuthenticated("the user of this credential no longer exists") from None
    return json_response(me_json(principal, user))


@routes.get("/keys", name="keys", allow_head=False)
async def list_keys(request: web.Request) -> web.Response:
    """The caller's API keys, revoked ones included, newest first."""
    keys = await request.app[CORE_KEY].auth.list_keys(principal_of(request))
    return json_response({"items": [api_key_json(key) for key in keys], "next_cursor": None})


@routes.post("/keys", name="keys")
async def create_key(request: web.Request) -> web.Response:
    """Create an API key no wider than the caller's scopes; the secret is shown this once."""
    fields = await read_fields(request, CREATE_FIELDS)
    key, secret = await request.app[CORE_KEY].auth.create_key_for(
        principal_of(request),
        name=fields["name"],
        scope=fields["scope"],
        device_ids=fields.get("device_ids"),
    )
    return json_response(api_key_json(key, secret=secret), status=201)


@routes.delete("/keys/{key_id}", name="key")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke one of the caller's keys."""
    await request.app[CORE_KEY].auth.revoke_key(principal_of(request), request.match_info["key_id"])
    return no_content()
