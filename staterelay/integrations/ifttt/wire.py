"""IFTTT's wire format: lenient JSON bodies in, ``data`` or ``errors`` out, never a trace.

IFTTT sends options requests without a ``Content-Type`` and may add keys at any time, so
bodies are parsed whatever their media type and unknown keys are ignored. Every answer is
``application/json; charset=utf-8``; errors are ``{"errors": [{"message": ...}]}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from staterelay.core.errors import BadRequest, NotAuthenticated, PlanLimit, StateRelayError
from staterelay.core.ifttt import ActionSkipped
from staterelay.jsoncodec import MAX_DEPTH, TooDeep, check_depth

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COMPRESS_ABOVE: Final = 1024
# IFTTT documents 400, 401, 404, 500 and 503; a domain error with another status (422 for
# a bad value, 409, 412) is "something wrong with incoming data": 400. A full disk is
# "our fault, try later" (500); a body that never arrived is the plain 408.
_KEPT_STATUSES: Final = frozenset({400, 401, 403, 404, 405, 408, 413, 500, 503})
_SERVER_STATUSES: Final = frozenset({507})
_HTTP_MESSAGES: Final = {
    404: "there is nothing at this address",
    405: "this address does not accept that method",
    413: "the request body is too large",
}


def ifttt_json(data: Any, *, status: int = 200) -> web.Response:
    """A JSON answer, compressed when large and the client accepts it."""
    # ASCII escapes: whatever text reaches an answer (a path segment, say) always encodes.
    text = json.dumps(data, separators=(",", ":"))
    response = web.Response(
        status=status, text=text, content_type="application/json", charset="utf-8"
    )
    if len(text) > COMPRESS_ABOVE:
        response.enable_compression()
    return response


def errors_response(status: int, message: str, *, skip: bool = False) -> web.Response:
    """``{"errors": [{"message": ...}]}`` (with ``"status": "SKIP"`` for skipped actions)."""
    error: dict[str, str] = {"message": message}
    if skip:
        error["status"] = "SKIP"
    return ifttt_json({"errors": [error]}, status=status)


def empty_response() -> web.Response:
    """200 with no body, as IFTTT's status and trigger-identity examples show."""
    return web.Response(status=200)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``; anything else is ``BadRequest``."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        check_depth(raw)
        value = json.loads(raw)
    except TooDeep:
        raise BadRequest(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value


def boundary_error(
    request: web.Request, error: StateRelayError, headers: Mapping[str, str]
) -> web.Response:
    """An error the request boundary raised itself (a rate limit), in IFTTT's error shape.

    The ``ErrorRenderer`` of the ``/ifttt/v1/`` surface; IFTTT retries later.
    """
    response = errors_response(error.status, _sentence(error.detail))
    response.headers.update(headers)
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure in IFTTT's error format; log and hide unexpected ones."""
    try:
        return await handler(request)
    except ActionSkipped as error:
        return errors_response(400, _sentence(error.detail), skip=True)
    except PlanLimit as error:
        # The plan does not allow it (a suspended device): a skip IFTTT shows, not a retry.
        return errors_response(400, _sentence(error.detail), skip=True)
    except NotAuthenticated as error:
        response = errors_response(401, _sentence(error.detail))
        response.headers["WWW-Authenticate"] = 'Bearer realm="staterelay"'
        return response
    except StateRelayError as error:
        status = error.status if error.status in _KEPT_STATUSES else 400
        if error.status in _SERVER_STATUSES:
            status = 500
        return errors_response(status, _sentence(error.detail))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _HTTP_MESSAGES.get(exc.status, exc.reason.lower() or "the request failed")
        response = errors_response(exc.status, _sentence(message))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConnectionResetError:
        raise  # the client hung up mid-body; the request boundary notes it
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return errors_response(500, "something went wrong on the server; it was logged.")


def _sentence(text: str) -> str:
    # Not capitalised: messages often start with a field name (``triggerFields``).
    text = text.strip() or "the request failed"
    return text + ("" if text.endswith((".", "!", "?")) else ".")
