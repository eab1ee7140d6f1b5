"""The request boundary: the one root middleware, where every request enters and leaves.

This is the hot path of the server: every request passes here once, so it does only what
every request needs and looks the path's surface up once (``staterelay.app.surfaces``);
whatever a surface does not need (the HTML layer, a rate limit) costs it nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from staterelay.app.hosts import HostRouter
from staterelay.app.metrics import METRICS_KEY, route_label
from staterelay.app.problems import InternalError, problem_response
from staterelay.app.ratelimit import RateLimitGate
from staterelay.app.surfaces import SurfaceTable
from staterelay.browser.middleware import html_layer
from staterelay.core.errors import NotFound, RequestTimeout, StateRelayError
from staterelay.core.request_tenant import close_slot, open_slot

_LOGGER = logging.getLogger(__name__)
_ACCESS = logging.getLogger("staterelay.access")

REQUEST_ID_KEY: Final = web.RequestKey("staterelay.request_id", str)

# Request ids: a random per-process prefix and a counter, unique without a syscall each.
_REQUEST_ID_PREFIX = uuid.uuid4().hex[:12]
_REQUEST_IDS = (f"{_REQUEST_ID_PREFIX}-{n}" for n in itertools.count(1))

HSTS: Final = "max-age=31536000"
# nginx's code for "the client closed the connection before the answer": access log, metrics.
CLIENT_CLOSED_REQUEST: Final = 499

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_boundary(
    surfaces: SurfaceTable,
    router: HostRouter,
    gate: RateLimitGate,
    *,
    strict_transport: bool,
    body_timeout: float,
) -> Middleware:
    """Every server-wide concern of a request, in this order.

    A request id (the client's ``X-Request-ID`` when sane), the path's surface, the host
    filter (only when role hosts split the URL space), the surface's rate limit, a deadline
    for the request body (see ``_BodyDeadline``), the HTML layer (sessions, origin checks,
    error pages) for HTML surfaces only, and a last line of defence that logs an unexpected
    error and answers it in the surface's error format without a traceback; a client that
    went away is one INFO line. Afterwards the request is counted for ``/metrics``, logged,
    and the answer gets ``X-Request-ID`` (and ``Strict-Transport-Security`` behind https).
    One middleware rather than a stack of them: every JSON request, the busy part of the URL
    space, then costs one frame here instead of five.
    """

    # Bound once: these run on every request.
    lookup, split, serves, counts = surfaces.lookup, router.split, router.serves, gate.counts

    @web.middleware
    async def boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-ID", "")
        if not (0 < len(request_id) <= 64 and request_id.isprintable()):
            request_id = next(_REQUEST_IDS)
        request[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()
        status = 500
        tenant, slot_token = open_slot()
        path = request.path
        surface = lookup(path)
        deadline: _BodyDeadline | None = None
        try:
            response: web.StreamResponse | None = None
            if split and not serves(request.host, surface):
                # The host's answer, whatever the path's surface: nothing here.
                response = problem_response(NotFound("there is nothing at this address"))
            elif counts(surface):
                response = await gate.refusal(request, surface)
            if response is None:
                if request.body_exists and not request.content.is_eof():
                    deadline = _BodyDeadline(request.content, body_timeout)
                if surface.html:
                    response = await html_layer(request, handler, session=surface.session)
                else:
                    response = await handler(request)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-ID"] = request_id
            if strict_transport:
                exc.headers["Strict-Transport-Security"] = HSTS
            if deadline is not None and deadline.expired:
                exc.force_close()
            raise
        except asyncio.CancelledError:
            # The client went away (aiohttp cancels its handler) or the server is stopping:
            # logged and counted as a closed request, never as a server error.
            status = CLIENT_CLOSED_REQUEST
            raise
        except ConnectionResetError:
            # aiohttp hands this to a handler reading the body of a client that hung up:
            # nobody is left to answer, and nothing went wrong here.
            _LOGGER.info("client went away during %s %s", request.method, path)
            response = web.Response(status=CLIENT_CLOSED_REQUEST)
            status = CLIENT_CLOSED_REQUEST
        except StateRelayError as error:
            # A domain error no adapter translated (on an operations path, say).
            response = surface.errors(request, error, {})
            status = error.status
        except Exception:
            _LOGGER.exception("unhandled error on %s %s", request.method, path)
            response = surface.errors(
                request, InternalError("an unexpected error occurred and was logged"), {}
            )
            status = 500
        finally:
            close_slot(slot_token)
            if deadline is not None:
                deadline.cancel()
            seconds = time.perf_counter() - started
            # The root app (this middleware's): cheaper than building ``request.config_dict``.
            metrics = request.app.get(METRICS_KEY)
            if metrics is not None:
                metrics.observe_request(route_label(request), request.method, status, seconds)
            if _ACCESS.isEnabledFor(logging.INFO):
                _log_access(request, request_id, status, seconds, tenant.tenant_id)
        response.headers["X-Request-ID"] = request_id
        if strict_transport:
            response.headers["Strict-Transport-Security"] = HSTS
        if deadline is not None and deadline.expired and not response.prepared:
            # The rest of a stalled body may never come: do not wait for it to reuse the
            # connection.
            response.force_close()
        return response

    return boundary


class _BodyTimedOut(RequestTimeout, TimeoutError):
    """``RequestTimeout`` for the adapters; a ``TimeoutError`` for aiohttp.

    Once the answer is out, aiohttp reads what is left of an unfinished body before it
    would reuse the connection; a ``TimeoutError`` there makes it stop and close instead of
    logging an unhandled error.
    """


class _BodyDeadline:
    """Fails the body stream of a request whose body has not all arrived in time.

    The handler's next read (or the one it is waiting in) raises ``RequestTimeout``, which
    each adapter answers in its own format (408); the request boundary then closes the
    connection. A body that arrived in time is left alone, however long the handler takes.
    """

    __slots__ = ("_handle", "_stream", "expired")

    def __init__(self, stream: StreamReader, seconds: float) -> None:
        self._stream = stream
        self.expired = False
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire, seconds)

    def _expire(self, seconds: float) -> None:
        if self._stream.is_eof():
            return
        self.expired = True
        self._stream.set_exception(
            _BodyTimedOut(f"the request body did not arrive within {seconds:g} seconds")
        )

    def cancel(self) -> None:
        """The request is over: no deadline any more."""
        self._handle.cancel()


def _log_access(
    request: web.Request, request_id: str, status: int, seconds: float, tenant: str | None
) -> None:
    """One access line: readable as text, and the same facts as fields for JSON logs."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    duration_ms = round(seconds * 1000, 1)
    _ACCESS.info(
        "%s %s %d %.1fms%s",
        request.method,
        route,
        status,
        duration_ms,
        f" tenant={tenant}" if tenant else "",
        extra={
            "request_id": request_id,
            "route": route,
            "method": request.method,
            "status": status,
            "duration_ms": duration_ms,
            "tenant": tenant,
        },
    )
