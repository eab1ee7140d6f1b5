"""The IFTTT service: the ``/ifttt/v1/`` API IFTTT calls, and Realtime notifications out.

``Ifttt`` is the integration: the API mounted at ``/ifttt/v1/`` (IFTTT's error shape, a
rate limit per IFTTT connection), the ``ifttt`` outbox sink of Realtime notifications, its
upkeep (at start it tells the fan-out whether to queue Realtime notifications, then it
prunes old trigger events, identities and action request ids every hour), its card and
set-up page, and its metrics.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.integration import (
    Integration,
    IntegrationContext,
    Parts,
    PeriodicTask,
    RateLimit,
    SettingsSection,
    SinkOutcomes,
    Surface,
)
from staterelay.core import Core
from staterelay.core.delivery import DeliveryPolicy, IftttPolicy
from staterelay.integrations.ifttt import dashboard
from staterelay.integrations.ifttt.realtime import IftttRealtimeSink
from staterelay.integrations.ifttt.routes import routes
from staterelay.integrations.ifttt.wire import boundary_error, errors_middleware
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

PREFIX: Final = "/ifttt/v1/"
PRUNE_INTERVAL: Final = 3600.0


class Ifttt(Integration):
    """The IFTTT integration."""

    name = "ifttt"
    section = SettingsSection(
        name="ifttt", title="IFTTT", read=lambda settings: settings.ifttt, required=("service_key",)
    )
    surfaces = (
        # IFTTT calls from a few shared addresses for every user: only its token counts.
        Surface(path=PREFIX, roles=("ifttt",), limit=RateLimit.IFTTT_TOKEN, errors=boundary_error),
        Surface(path="/ifttt/", roles=("ifttt",), limit=RateLimit.NONE),
    )

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Linked households keep trigger timelines; live identities get Realtime nudges."""
        return (IftttPolicy(),)

    def build(self, context: IntegrationContext) -> Parts:
        """The API, the Realtime sink, the upkeep, the card and set-up page."""
        core, settings = context.core, context.settings
        sink = IftttRealtimeSink(
            url=settings.ifttt.realtime_url,
            service_key=settings.ifttt.service_key,
            clock=core.clock,
            http=context.http,
        )

        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            await core.ifttt.start()
            yield

        return Parts(
            routes=dashboard.routes,
            subapps={PREFIX: create_ifttt_app(core, settings)},
            sinks=(sink,),
            periodic=(PeriodicTask("ifttt-prune", PRUNE_INTERVAL, lambda: prune(core)),),
            cards=(dashboard.CARD,),
            collectors=(
                SinkOutcomes(
                    core.counters,
                    name="ifttt_realtime_notifications",
                    sink=sink.name,
                    documentation="IFTTT Realtime notification attempts, by outcome.",
                ),
            ),
            running=running,
        )


def create_ifttt_app(core: Core, settings: Settings) -> web.Application:
    """The sub-application mounted at ``/ifttt/v1/``."""
    app = web.Application(middlewares=[errors_middleware])
    app[CORE_KEY] = core
    app[SETTINGS_KEY] = settings
    app.router.add_routes(routes)
    return app


async def prune(core: Core) -> None:
    """Prune IFTTT's timelines and bookkeeping (the periodic task runs it every hour)."""
    pruned = await core.ifttt.prune()
    if pruned.total:
        _LOGGER.info(
            "pruned %d IFTTT events, %d identities, %d request ids",
            pruned.events,
            pruned.identities,
            pruned.requests,
        )


__all__ = ["Ifttt", "IftttRealtimeSink", "create_ifttt_app"]
