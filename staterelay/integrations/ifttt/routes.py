"""The IFTTT service API under ``/ifttt/v1/``: status, test setup, user info, triggers, actions.

``status`` and ``test/setup`` are IFTTT calling as itself (its service key); every other
endpoint is IFTTT calling for a user, with the user's OAuth access token.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.core.errors import NotAuthenticated, Unavailable
from staterelay.core.facts import IFTTT_STATUS_SEEN
from staterelay.core.records import Principal
from staterelay.integrations.ifttt.wire import empty_response, ifttt_json, read_object

SERVICE_KEY_HEADERS: Final = ("IFTTT-Service-Key", "IFTTT-Channel-Key")

routes = web.RouteTableDef()


def presented_service_key(request: web.Request) -> str | None:
    """The service key IFTTT sent (the legacy ``IFTTT-Channel-Key`` name too)."""
    for name in SERVICE_KEY_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            return value.strip()
    return None


async def user_of(request: web.Request) -> Principal:
    """The user whose OAuth access token came as ``Authorization: Bearer``."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send the user's access token as 'Authorization: Bearer <token>'")
    core = request.app[CORE_KEY]
    principal = await core.auth.authenticate_linked_app(token.strip())
    await core.billing.check_integration(principal.tenant_id, "ifttt")  # hosted plans
    return principal


@routes.get("/status", name="status")
async def status(request: web.Request) -> web.Response:
    """200 with no body when triggers and actions can be served; 503 when not."""
    core = request.app[CORE_KEY]
    core.ifttt.check_service_key(presented_service_key(request))
    if not await core.ifttt.ready():
        raise Unavailable("the database is not ready; try again shortly")
    await core.facts.note(IFTTT_STATUS_SEEN)  # the IFTTT set-up page's check
    return empty_response()


@routes.post("/test/setup", name="test_setup")
async def test_setup(request: web.Request) -> web.Response:
    """A test user's access token and samples for IFTTT's endpoint tests."""
    ifttt = request.app[CORE_KEY].ifttt
    ifttt.check_service_key(presented_service_key(request))
    return ifttt_json({"data": await ifttt.setup_test()})


@routes.get("/user/info", name="user_info")
async def user_info(request: web.Request) -> web.Response:
    """Who the token belongs to: the permanent user id, a name and a URL."""
    principal = await user_of(request)
    return ifttt_json({"data": await request.app[CORE_KEY].ifttt.user_info(principal)})


@routes.post("/triggers/{slug}", name="trigger")
async def poll_trigger(request: web.Request) -> web.Response:
    """A trigger's timeline, newest first."""
    principal = await user_of(request)
    body = await read_object(request)
    items = await request.app[CORE_KEY].ifttt.poll(principal, request.match_info["slug"], body)
    return ifttt_json({"data": items})


@routes.delete("/triggers/{slug}/trigger_identity/{identity}", name="trigger_identity")
async def forget_identity(request: web.Request) -> web.Response:
    """IFTTT no longer polls this identity (its last Applet is off); idempotent."""
    principal = await user_of(request)
    await request.app[CORE_KEY].ifttt.forget_identity(
        principal, request.match_info["slug"], request.match_info["identity"]
    )
    return empty_response()


@routes.post("/triggers/{slug}/fields/{field}/options", name="trigger_field_options")
async def trigger_field_options(request: web.Request) -> web.Response:
    """A trigger field's dropdown."""
    return await _options(request, "triggers")


@routes.post("/actions/{slug}/fields/{field}/options", name="action_field_options")
async def action_field_options(request: web.Request) -> web.Response:
    """An action field's dropdown."""
    return await _options(request, "actions")


async def _options(request: web.Request, step: str) -> web.Response:
    principal = await user_of(request)
    options = await request.app[CORE_KEY].ifttt.options(
        principal, step, request.match_info["slug"], request.match_info["field"]
    )
    return ifttt_json({"data": options})


@routes.post("/triggers/{slug}/fields/{field}/validate", name="trigger_field_validate")
async def validate_trigger_field(request: web.Request) -> web.Response:
    """Whether one typed-in trigger field value is acceptable (always 200)."""
    principal = await user_of(request)
    body = await read_object(request)
    result = await request.app[CORE_KEY].ifttt.validate_field(
        principal, request.match_info["slug"], request.match_info["field"], body.get("value")
    )
    return ifttt_json({"data": result})


@routes.post("/triggers/{slug}/validate", name="trigger_validate")
@routes.post("/triggers/{slug}/fields/validate", name="trigger_fields_validate")
async def validate_trigger_fields(request: web.Request) -> web.Response:
    """Contextual validation of all of a trigger's fields (both documented paths)."""
    principal = await user_of(request)
    body = await read_object(request)
    result = await request.app[CORE_KEY].ifttt.validate_fields(
        principal, request.match_info["slug"], body.get("values")
    )
    return ifttt_json({"data": result})


@routes.post("/actions/{slug}", name="action")
async def run_action(request: web.Request) -> web.Response:
    """Run an action; a retried request (same ``X-Request-ID``) has no second effect."""
    principal = await user_of(request)
    body = await read_object(request)
    result = await request.app[CORE_KEY].ifttt.run_action(
        principal,
        request.match_info["slug"],
        body,
        request_id=request.headers.get("X-Request-ID"),
    )
    return ifttt_json({"data": [result]})
