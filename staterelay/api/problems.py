"""The API's errors: HTTP errors aiohttp raises, each with a domain error and a stable code.

Every one is answered in the one problem+json shape of ``staterelay.app.problems``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.core.errors import BadRequest, NotFound, StateRelayError


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


def error_for_http(exc: web.HTTPException) -> StateRelayError:
    """The domain error that stands for an HTTP error aiohttp raised (404, 405, 413, ...)."""
    kind = _HTTP_CODES.get(exc.status)
    if kind is None:
        return OtherHTTPError(exc.status, exc.reason)
    return kind(_HTTP_DETAILS.get(exc.status, exc.reason.lower()))
