"""The one JSON error shape of StateRelay's own JSON surfaces: RFC 9457 problem details.

The API, the request boundary's own answers (404 on a host outside its role, 408, 429, 500,
507) and the operations endpoints all answer errors as ``application/problem+json`` built
here. Protocol-mandated shapes (OAuth errors, Alexa ErrorResponse, IFTTT ``errors``) are
their adapters' own; the surfaces table says which renderer answers which path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from staterelay.core.errors import StateRelayError

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://staterelay.dev/problems/"


class InternalError(StateRelayError):
    """Something unexpected failed; the detail never says what."""


def problem_body(error: StateRelayError) -> dict[str, Any]:
    """The problem document for a domain error."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    if error.field is not None:
        body["field"] = error.field
    body.update(error.members())
    return body


def problem_response(
    error: StateRelayError, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A problem+json response for a domain error."""
    return web.Response(
        status=error.status,
        text=json.dumps(problem_body(error)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problem(
    request: web.Request, error: StateRelayError, headers: Mapping[str, str]
) -> web.Response:
    """The problem+json error renderer of the surfaces table (see ``ErrorRenderer``)."""
    return problem_response(error, headers=headers or None)
