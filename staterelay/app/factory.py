"""The app factory: builds the store, core, adapters, integrations and workers into one app.

Everything integration-specific comes from the registry (``staterelay.app.registry``): the
factory builds each integration's parts once and wires them in the same way for all of
them. The request boundary (``staterelay.app.boundary``) is the one root middleware.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

from aiohttp import web

from staterelay.api import create_api_app
from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.assemble import build_core
from staterelay.app.boundary import request_boundary
from staterelay.app.hosts import HostRouter
from staterelay.app.http import OutgoingHttp
from staterelay.app.integration import (
    CARDS_KEY,
    Integration,
    IntegrationContext,
    Parts,
    PeriodicTask,
)
from staterelay.app.metrics import setup_metrics
from staterelay.app.periodic import PeriodicRunner
from staterelay.app.ratelimit import RateLimitGate
from staterelay.app.registry import BUILTIN, check_unique, delivery_policies, migration_folders
from staterelay.app.surfaces import SurfaceTable
from staterelay.core import Core
from staterelay.core.clock import Clock, system_clock
from staterelay.core.crypto import load_or_create_secret
from staterelay.core.errors import StorageFull
from staterelay.core.events import OutboxEnqueued
from staterelay.core.ratelimit import MemoryRateLimiter
from staterelay.core.sinks import Sink
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.oauth import periodic_tasks as oauth_tasks, setup_oauth
from staterelay.replicas import Fanout, open_fanout
from staterelay.settings import Settings
from staterelay.ui import setup_ui

_LOGGER = logging.getLogger(__name__)

DISPATCHER_KEY: Final = web.AppKey("staterelay.dispatcher", Dispatcher)
PRUNE_INTERVAL: Final = 3600.0
FLUSH_INTERVAL: Final = 10.0

AppContext = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    instance_secret: bytes | None = None,
    integrations: Sequence[Integration] = BUILTIN,
) -> web.Application:
    """Build the whole application with ``integrations``; nothing connects until it starts."""
    check_unique(integrations)
    secret = instance_secret or load_or_create_secret(settings.secret_key_path)
    fanout = open_fanout(settings, clock) if settings.redis.url else None
    core = build_core(
        settings,
        instance_secret=secret,
        clock=clock,
        bus=fanout.bus if fanout is not None else None,
        login_throttle=fanout.login_throttle if fanout is not None else None,
        migrations=migration_folders(integrations),
        delivery_policies=delivery_policies(settings, integrations),
    )
    limiter = fanout.rate_limiter if fanout is not None else MemoryRateLimiter()
    core.billing.share_limiter(limiter)
    surfaces = SurfaceTable.of(integrations)
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            request_boundary(
                surfaces,
                HostRouter(settings.server.hosts, surfaces),
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
    http = OutgoingHttp(core.webhooks.policy)
    context = IntegrationContext(core=core, settings=settings, http=http, instance_secret=secret)
    parts = [integration.build(context) for integration in integrations]
    sinks = _sinks_by_name(parts)

    # Started in this order, stopped in the reverse one: the store outlives every user of it,
    # the outgoing HTTP outlives the sinks.
    app.cleanup_ctx.append(_store_context)
    if fanout is not None:
        app.cleanup_ctx.append(_fanout_context(fanout))
    app.cleanup_ctx.append(_http_context(http))
    for part in parts:
        if part.running is not None:
            app.cleanup_ctx.append(_running_context(part.running))
    app.cleanup_ctx.append(_dispatcher_context(sinks))

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    setup_metrics(
        app,
        core,
        settings.metrics,
        redis=fanout,
        sinks=sinks,
        collectors=[collector for part in parts for collector in part.collectors],
    )
    setup_ui(app)
    setup_oauth(app, core, settings)
    # Last: the periodic tasks start once everything else has, and stop first, before the
    # final flushes of the contexts above them.
    periodic = [*core_tasks(core), *oauth_tasks(core), *(t for p in parts for t in p.periodic)]
    app.cleanup_ctx.append(_periodic_context(PeriodicRunner(periodic)))
    app[CARDS_KEY] = tuple(card for part in parts for card in part.cards)
    for part in parts:
        for key, value in part.keys.items():
            app[key] = value
        app.router.add_routes(part.routes)
        for prefix, subapp in part.subapps.items():
            app.add_subapp(prefix, subapp)
    app.add_subapp("/api/v1/", create_api_app(core, settings))
    return app


def core_tasks(core: Core) -> tuple[PeriodicTask, ...]:
    """Core's own upkeep: API keys' last-used times often, old activity hourly."""

    async def prune_activity() -> None:
        removed = await core.activity.prune()
        if removed:
            _LOGGER.info("pruned %d old activity and outbox rows", removed)

    return (
        PeriodicTask("api-keys-last-used", FLUSH_INTERVAL, core.auth.flush_last_used),
        PeriodicTask("activity-prune", PRUNE_INTERVAL, prune_activity),
    )


def _sinks_by_name(parts: Sequence[Parts]) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    for part in parts:
        for sink in part.sinks:
            if sink.name in sinks:
                raise ValueError(f"two outbox sinks are named {sink.name!r}")
            sinks[sink.name] = sink
    return sinks


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


def _fanout_context(fanout: Fanout) -> AppContext:
    """Relay bus events through Redis while the app runs; close the connections after."""

    async def fanout_context(app: web.Application) -> AsyncIterator[None]:
        await fanout.start()
        try:
            yield
        finally:
            await fanout.close()

    return fanout_context


def _http_context(http: OutgoingHttp) -> AppContext:
    """Close the outgoing HTTP sessions once everything that sends has stopped."""

    async def http_context(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await http.close()

    return http_context


def _running_context(running: Callable[[], AbstractAsyncContextManager[None]]) -> AppContext:
    """An integration's ``Parts.running``, entered while the application runs."""

    async def running_context(app: web.Application) -> AsyncIterator[None]:
        async with running():
            yield

    return running_context


def _dispatcher_context(sinks: dict[str, Sink]) -> AppContext:
    """Deliver the outbox through ``sinks`` while the app runs; close them after."""

    async def dispatcher_context(app: web.Application) -> AsyncIterator[None]:
        core = app[CORE_KEY]
        settings = app[SETTINGS_KEY]
        hooks = settings.webhooks
        dispatcher = Dispatcher(
            core,
            sinks,
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
            for sink in sinks.values():
                await sink.close()

    return dispatcher_context


def _periodic_context(runner: PeriodicRunner) -> AppContext:
    """Run the periodic tasks while the app runs."""

    async def periodic_context(app: web.Application) -> AsyncIterator[None]:
        runner.start()
        try:
            yield
        finally:
            await runner.stop()

    return periodic_context
