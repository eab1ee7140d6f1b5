"""The app factory: builds the store, core, adapters and workers into one aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from staterelay.api import create_api_app
from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.assemble import build_core
from staterelay.app.hosts import HostRouter
from staterelay.app.metrics import METRICS_KEY, route_label, setup_metrics
from staterelay.app.ratelimit import RateLimitGate
from staterelay.browser.addresses import unreachable_reason
from staterelay.browser.middleware import html_layer, is_html_path
from staterelay.core import Core
from staterelay.core.clock import Clock, system_clock
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.core.errors import RequestTimeout, StateRelayError, StorageFull
from staterelay.core.events import OutboxEnqueued
from staterelay.core.guide import GuideStep
from staterelay.core.oauth import OAuthClient
from staterelay.core.ratelimit import MemoryRateLimiter
from staterelay.core.records import Principal
from staterelay.core.request_tenant import close_slot, open_slot
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.integrations.alexa import ALEXA_KEY, AlexaIntegration, setup_alexa
from staterelay.integrations.alexa.console import (
    AlexaProgress,
    SetupPlan,
    alexa_clients,
    relay_url,
    setup_steps,
)
from staterelay.integrations.alexa.probe import send_test_event
from staterelay.integrations.alexa.relay import lambda_zip
from staterelay.integrations.ifttt import IFTTT_KEY, setup_ifttt
from staterelay.integrations.webhooks import WebhookSink
from staterelay.oauth import setup_oauth
from staterelay.replicas import Fanout, open_fanout
from staterelay.settings import Settings
from staterelay.ui import ALEXA_TOOLS_KEY, AlexaTools, GuideProgress, setup_ui

_LOGGER = logging.getLogger(__name__)
_ACCESS = logging.getLogger("staterelay.access")

DISPATCHER_KEY: Final = web.AppKey("staterelay.dispatcher", Dispatcher)
REQUEST_ID_KEY: Final = web.RequestKey("staterelay.request_id", str)

# Request ids: a random per-process prefix and a counter, unique without a syscall each.
_REQUEST_ID_PREFIX = uuid.uuid4().hex[:12]
_REQUEST_IDS = (f"{_REQUEST_ID_PREFIX}-{n}" for n in itertools.count(1))

HSTS: Final = "max-age=31536000"
# nginx's code for "the client closed the connection before the answer": access log, metrics.
CLIENT_CLOSED_REQUEST: Final = 499
PRUNE_INTERVAL = 3600.0
FLUSH_INTERVAL = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    instance_secret: bytes | None = None,
) -> web.Application:
    """Build the whole application; nothing connects until the app starts."""
    secret = instance_secret or load_or_create_secret(settings.secret_key_path)
    fanout = open_fanout(settings, clock) if settings.redis.url else None
    core = build_core(
        settings,
        instance_secret=secret,
        clock=clock,
        bus=fanout.bus if fanout is not None else None,
        login_throttle=fanout.login_throttle if fanout is not None else None,
    )
    limiter = fanout.rate_limiter if fanout is not None else MemoryRateLimiter()
    router = HostRouter(settings.server.hosts)
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            _request_boundary(
                router,
                RateLimitGate(
                    limiter,
                    settings.limits,
                    ifttt_token_per_minute=settings.ifttt_token_per_minute,
                ),
                strict_transport=settings.public_url.startswith("https://"),
                body_timeout=settings.server.body_timeout_seconds,
            )
        ],
    )
    app[SETTINGS_KEY] = settings
    app[CORE_KEY] = core
    app.cleanup_ctx.append(_store_context)
    if fanout is not None:
        app.cleanup_ctx.append(_fanout_context(fanout))
    app.cleanup_ctx.append(_dispatcher_context)
    app.cleanup_ctx.append(_maintenance_context)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    setup_metrics(app, core, settings.metrics, redis=fanout)
    setup_ui(app)
    relay = settings.alexa.relay_secret or relay_secret(secret)
    setup_oauth(app, core, settings)
    integration = setup_alexa(app, core, settings, relay)
    tools = _alexa_tools(settings, integration, relay)
    if tools is not None:
        app[ALEXA_TOOLS_KEY] = tools
    setup_ifttt(app, core, settings)
    app.add_subapp("/api/v1/", create_api_app(core, settings))
    return app


def _alexa_tools(
    settings: Settings, integration: AlexaIntegration, relay: str
) -> AlexaTools | None:
    """Lend the dashboard the Alexa adapter's set-up guide, relay package and test event.

    The package carries the instance's relay secret, so with open sign-up (a hosted
    instance, where every household has an admin) the dashboard offers none of it: the
    operator uses ``staterelay alexa setup``.
    """
    if settings.accounts.registration == "open":
        return None
    url = relay_url(settings)

    def guide(clients: Sequence[OAuthClient], progress: GuideProgress) -> list[GuideStep]:
        plan = SetupPlan(
            clients=alexa_clients(settings, clients),
            relay_secret=relay,
            relay_secret_from_config=bool(settings.alexa.relay_secret),
            new_client_secret=progress.new_client_secret,
            messaging_configured=progress.messaging,
        )
        seen = AlexaProgress(
            relay_seen=progress.relay_seen,
            linked=progress.linked,
            accept_grant=progress.accept_grant,
            routine_switch=progress.routine_switch,
            report_accepted=progress.report_accepted,
        )
        return setup_steps(settings, plan, seen)

    async def send_test(principal: Principal) -> tuple[bool, str]:
        return await send_test_event(
            integration.core,
            settings.alexa,
            integration.http,
            integration.tokens,
            principal,
        )

    return AlexaTools(
        lambda_zip=lambda: lambda_zip(url, relay),
        guide=guide,
        relay_secret=relay,
        unreachable=unreachable_reason(url),
        send_test=send_test,
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers, every migration is applied, the disk has room."""
    readiness = await request.app[CORE_KEY].readiness()
    if readiness.ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": readiness.reason}, status=503)


async def _store_context(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE_KEY]
    await core.store.open()
    try:
        yield
    finally:
        try:
            await core.auth.flush_last_used(force=True)
        except StorageFull:
            _LOGGER.warning("API keys' last-used times were not saved: the disk is full")
        await core.bus.close()
        await core.store.close()


def _fanout_context(fanout: Fanout) -> Callable[[web.Application], AsyncIterator[None]]:
    """Relay bus events through Redis while the app runs; close the connections after."""

    async def fanout_context(app: web.Application) -> AsyncIterator[None]:
        await fanout.start()
        try:
            yield
        finally:
            await fanout.close()

    return fanout_context


async def _dispatcher_context(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE_KEY]
    settings = app[SETTINGS_KEY]
    hooks = settings.webhooks
    sink = WebhookSink(
        core,
        timeout_seconds=hooks.timeout_seconds,
        max_response_bytes=hooks.max_response_bytes,
        policy=core.webhooks.policy,
    )
    dispatcher = Dispatcher(
        core,
        {"webhook": sink, "alexa": app[ALEXA_KEY].sink, "ifttt": app[IFTTT_KEY].sink},
        config=DispatcherConfig(
            owner=f"proc-{uuid.uuid4().hex[:12]}",
            max_age_seconds=hooks.max_age_hours * 3600.0,
            max_attempts=hooks.max_attempts,
            concurrency_per_destination=hooks.concurrency_per_destination,
            release_all_on_start=settings.database_url.startswith("sqlite:"),
            lease_seconds=settings.dispatch.lease_seconds,
            first_retry_seconds=settings.dispatch.first_retry_seconds,
        ),
    )
    app[DISPATCHER_KEY] = dispatcher
    unsubscribe = core.bus.subscribe(OutboxEnqueued, lambda _event: dispatcher.wake())
    await dispatcher.start()
    try:
        yield
    finally:
        unsubscribe()
        await dispatcher.stop()
        await sink.close()
        await app[ALEXA_KEY].sink.close()
        await app[IFTTT_KEY].sink.close()


async def _maintenance_context(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE_KEY]
    task = asyncio.create_task(_maintenance(core), name="maintenance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _maintenance(core: Core) -> None:
    """Flush API-key last-used times often and prune old activity hourly."""
    last_prune = 0.0
    while True:
        try:
            await core.auth.flush_last_used()
            if time.monotonic() - last_prune >= PRUNE_INTERVAL:
                last_prune = time.monotonic()
                removed = await core.activity.prune()
                if removed:
                    _LOGGER.info("pruned %d old activity and outbox rows", removed)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("maintenance step failed")
        await asyncio.sleep(FLUSH_INTERVAL)


def _request_boundary(
    router: HostRouter, gate: RateLimitGate, *, strict_transport: bool, body_timeout: float
) -> Middleware:
    """The one root middleware: every server-wide concern of a request, in this order.

    A request id (the client's ``X-Request-ID`` when sane), the host filter (only when role
    hosts split the URL space), the rate limits, a deadline for the request body (see
    ``_BodyDeadline``), the HTML layer (sessions, origin checks, error pages) for browser
    paths only, and a last line of defence that logs an unexpected error and answers it
    without a traceback; a client that went away is one INFO line. Afterwards the request
    is counted for ``/metrics``, logged, and the answer gets ``X-Request-ID`` (and
    ``Strict-Transport-Security`` behind https). One middleware rather than a stack of them:
    every JSON request, the busy part of the URL space, then costs one frame here instead
    of five.
    """

    @web.middleware
    async def request_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-ID", "")
        if not (0 < len(request_id) <= 64 and request_id.isprintable()):
            request_id = next(_REQUEST_IDS)
        request[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()
        status = 500
        tenant, slot_token = open_slot()
        path = request.path
        deadline: _BodyDeadline | None = None
        try:
            response: web.StreamResponse | None = None
            if router.split and not router.allows(request.host, path):
                response = _not_found()
            elif gate.counts(path):
                response = await gate.refusal(request)
            if response is None:
                if request.body_exists and not request.content.is_eof():
                    deadline = _BodyDeadline(request.content, body_timeout)
                if is_html_path(path):
                    response = await html_layer(request, handler)
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
            raise
        except ConnectionResetError:
            # aiohttp hands this to a handler reading the body of a client that hung up:
            # nobody is left to answer, and nothing went wrong here.
            _LOGGER.info("client went away during %s %s", request.method, path)
            response = web.Response(status=CLIENT_CLOSED_REQUEST)
            status = CLIENT_CLOSED_REQUEST
        except StateRelayError as error:
            # A domain error no adapter translated (on an operations path, say).
            response = _problem(error)
            status = error.status
        except Exception:
            _LOGGER.exception("unhandled error on %s %s", request.method, path)
            response = _internal_error()
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

    return request_boundary


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


def _not_found() -> web.Response:
    """What a host outside its role's paths answers (see ``hosts``)."""
    return web.json_response(
        {"title": "Not found", "status": 404, "code": "not_found"},
        status=404,
        content_type="application/problem+json",
    )


def _problem(error: StateRelayError) -> web.Response:
    body = {"title": error.title, "status": error.status, "code": error.code}
    return web.json_response(
        {**body, "detail": error.detail},
        status=error.status,
        content_type="application/problem+json",
    )


def _internal_error() -> web.Response:
    return web.json_response(
        {"title": "Internal error", "status": 500, "code": "internal_error"},
        status=500,
        content_type="application/problem+json",
    )


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
