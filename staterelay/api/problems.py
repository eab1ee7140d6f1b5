"""RFC 9457 problem details: every API error, domain or HTTP, as ``application/problem+json``."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from staterelay.core.errors import BadRequest, NotFound, StateRelayError

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://staterelay.dev/problems/"


class PayloadTooLarge(StateRelayError):
    """The request body is larger than the instance accepts."""

    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(StateRelayError):
    """The request body is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class MethodNotAllowed(StateRelayError):
    """The path exists but does not accept this method."""

    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class InternalError(StateRelayError):
    """Something unexpected failed; the detail never says what."""


class OtherHTTPError(StateRelayError):
    """An HTTP error aiohttp raised that has no domain error of its own."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason.lower() or "the request failed")
        self.status = status
        self.title = reason
        self.code = "_".join(reason.lower().replace("-", " ").split()) or "error"


# aiohttp raises these itself (routing, body limits); each gets a stable code of ours.
_HTTP_CODES: Final[dict[int, type[StateRelayError]]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}
_HTTP_DETAILS: Final[dict[int, str]] = {
    400: "the request could not be parsed",
    404: "no such resource",
    405: "this resource does not accept the method",
    413: "the request body is too large",
}


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
    return body


def problem_response(
    error: StateRelayError, *, headers: dict[str, str] | None = None
) -> web.Response:
    """A problem+json response for a domain error."""
    return web.Response(
        status=error.status,
        text=json.dumps(problem_body(error)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def error_for_http(exc: web.HTTPException) -> StateRelayError:
    """The domain error that stands for an HTTP error aiohttp raised (404, 405, 413, ...)."""
    kind = _HTTP_CODES.get(exc.status)
    if kind is None:
        return OtherHTTPError(exc.status, exc.reason)
    return kind(_HTTP_DETAILS.get(exc.status, exc.reason.lower()))
