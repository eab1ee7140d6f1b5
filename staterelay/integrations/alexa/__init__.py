"""The Alexa Smart Home skill: directives in, proactive events out, and the Lambda relay.

``setup_alexa(app, core, settings)`` adds ``POST /alexa/smart_home`` and keeps the
integration (its HTTP session, Login with Amazon client, token keeper and the ``alexa``
outbox sink) under ``ALEXA_KEY``; the app factory hands ``sink`` to the dispatcher, whose
shutdown closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from staterelay.core import Core
from staterelay.integrations.alexa.change_report import ChangeReportSink
from staterelay.integrations.alexa.lwa import HttpSession, LoginWithAmazon, TokenKeeper
from staterelay.integrations.alexa.views import PATH, SmartHomeView
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

REPORT_FLUSH_INTERVAL: Final = 10.0


class AlexaIntegration:
    """Everything the Alexa adapter keeps for the life of the app."""

    def __init__(self, core: Core, settings: Settings, relay_secret: str) -> None:
        self.core = core
        self.settings = settings
        self.http = HttpSession()
        self.lwa = LoginWithAmazon(self.http, settings.alexa, core.alexa.messaging)
        self.tokens = TokenKeeper(core, self.lwa)
        self.sink = ChangeReportSink(core, settings.alexa, self.http, self.tokens)
        self.view = SmartHomeView(core, settings.alexa, self.lwa, relay_secret)


ALEXA_KEY: Final = web.AppKey("staterelay.integrations.alexa", AlexaIntegration)


def setup_alexa(
    app: web.Application, core: Core, settings: Settings, relay_secret: str
) -> AlexaIntegration:
    """Add the directive endpoint and the periodic write of report results.

    ``relay_secret`` is what the Lambda relay must send: ``alexa.relay_secret``, or the one
    derived from the instance's secret key.
    """
    integration = AlexaIntegration(core, settings, relay_secret)
    app[ALEXA_KEY] = integration
    app.router.add_post(PATH, integration.view.post, name="alexa-smart-home")
    app.cleanup_ctx.append(_reports_context)
    return integration


async def _reports_context(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_flush_reports(app[ALEXA_KEY].core), name="alexa-reports")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _flush_reports(core: Core) -> None:
    """Write the latest report result of each grant every few seconds."""
    while True:
        await asyncio.sleep(REPORT_FLUSH_INTERVAL)
        try:
            await core.alexa.flush_reports()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("writing Alexa report results failed")


__all__ = ["ALEXA_KEY", "AlexaIntegration", "ChangeReportSink", "setup_alexa"]
