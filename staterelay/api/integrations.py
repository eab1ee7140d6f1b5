"""The caller's integrations: ``/integrations/alexa`` says whether Alexa hears about changes."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.responses import json_response
from staterelay.app.appkeys import CORE_KEY
from staterelay.core.alexa import AlexaStatus
from staterelay.core.clock import iso

routes = web.RouteTableDef()

_TIME: Final = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: Final = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: Final[dict[str, Any]] = {
    "AlexaIntegration": {
        "type": "object",
        "required": [
            "linked",
            "region",
            "linked_at",
            "proactive_events_configured",
            "last_change_report",
            "token",
            "unlinked_at",
            "unlinked_reason",
        ],
        "properties": {
            "linked": {
                "type": "boolean",
                "description": "True while StateRelay may send this user's changes to Alexa.",
            },
            "region": {"enum": ["NA", "EU", "FE", None]},
            "linked_at": _TIME_OR_NULL,
            "proactive_events_configured": {
                "type": "boolean",
                "description": "Whether the instance has the skill's messaging credentials.",
            },
            "last_change_report": {
                "type": ["object", "null"],
                "description": "The latest event sent to Alexa: 202, or the gateway's error.",
                "required": ["at", "status_code", "error"],
                "properties": {
                    "at": _TIME,
                    "status_code": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                },
            },
            "token": {
                "type": ["object", "null"],
                "description": "The Login with Amazon token: when it expires, refreshes, fails.",
                "required": ["expires_at", "last_refresh_at", "last_error", "last_error_at"],
                "properties": {
                    "expires_at": _TIME_OR_NULL,
                    "last_refresh_at": _TIME_OR_NULL,
                    "last_error": {"type": ["string", "null"]},
                    "last_error_at": _TIME_OR_NULL,
                },
            },
            "unlinked_at": _TIME_OR_NULL,
            "unlinked_reason": {"type": ["string", "null"]},
        },
    }
}


def alexa_json(status: AlexaStatus, *, configured: bool) -> dict[str, Any]:
    """The JSON of an Alexa link status."""
    report = None
    if status.last_report_at is not None:
        report = {
            "at": iso(status.last_report_at),
            "status_code": status.last_report_status,
            "error": status.last_report_error,
        }
    token = None
    if status.linked or status.token_error is not None:
        token = {
            "expires_at": iso(status.token_expires_at),
            "last_refresh_at": iso(status.token_refreshed_at),
            "last_error": status.token_error,
            "last_error_at": iso(status.token_error_at),
        }
    return {
        "linked": status.linked,
        "region": status.region,
        "linked_at": iso(status.linked_at),
        "proactive_events_configured": configured,
        "last_change_report": report,
        "token": token,
        "unlinked_at": iso(status.unlinked_at),
        "unlinked_reason": status.unlinked_reason,
    }


@routes.get("/integrations/alexa", name="integration-alexa", allow_head=False)
async def alexa_status(request: web.Request) -> web.Response:
    """The caller's Alexa link: region, token health and the last ChangeReport's result."""
    core = request.app[CORE_KEY]
    status = await core.alexa.status(principal_of(request))
    configured = await core.alexa.messaging() is not None
    return json_response(alexa_json(status, configured=configured))
