"""The IFTTT service: the ``/ifttt/v1/`` API IFTTT calls, and Realtime notifications out.

``setup_ifttt(app, core, settings)`` mounts the API, keeps the integration (its Realtime
outbox sink) under ``IFTTT_KEY`` for the app factory to hand to the dispatcher, and runs
the upkeep: at start it tells the fan-out whether to queue Realtime notifications, then it
prunes old trigger events, identities and action request ids every hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.core import Core
from staterelay.integrations.ifttt.realtime import IftttRealtimeSink
from staterelay.integrations.ifttt.routes import routes
from staterelay.integrations.ifttt.wire import errors_middleware
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

PREFIX: Final = "/ifttt/v1/"
PRUNE_INTERVAL: Final = 3600.0


class IftttIntegration:
    """What the IFTTT adapter keeps for the life of the app."""

    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.sink = IftttRealtimeSink(
            url=settings.ifttt.realtime_url,
            service_key=settings.ifttt.service_key,
            clock=core.clock,
        )


IFTTT_KEY: Final = web.AppKey("staterelay.integrations.ifttt", IftttIntegration)


def create_ifttt_app(core: Core, settings: Settings) -> web.Application:
    """The sub-application mounted at ``/ifttt/v1/``."""
    app = web.Application(middlewares=[errors_middleware])
    app[CORE_KEY] = core
    app[SETTINGS_KEY] = settings
    app.router.add_routes(routes)
    return app


def setup_ifttt(app: web.Application, core: Core, settings: Settings) -> IftttIntegration:
    """Mount the IFTTT API and its upkeep; call after the store's cleanup context."""
    integration = IftttIntegration(core, settings)
    app[IFTTT_KEY] = integration
    app.add_subapp(PREFIX, create_ifttt_app(core, settings))
    app.cleanup_ctx.append(_upkeep_context)
    return integration


async def _upkeep_context(app: web.Application) -> AsyncIterator[None]:
    core = app[IFTTT_KEY].core
    await core.ifttt.start()
    task = asyncio.create_task(_prune(core), name="ifttt-upkeep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _prune(core: Core) -> None:
    """Prune IFTTT's timelines and bookkeeping now and then every hour."""
    while True:
        try:
            pruned = await core.ifttt.prune()
            if pruned.total:
                _LOGGER.info(
                    "pruned %d IFTTT events, %d identities, %d request ids",
                    pruned.events,
                    pruned.identities,
                    pruned.requests,
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("pruning IFTTT data failed")
        await asyncio.sleep(PRUNE_INTERVAL)


__all__ = ["IFTTT_KEY", "IftttIntegration", "IftttRealtimeSink", "create_ifttt_app", "setup_ifttt"]
