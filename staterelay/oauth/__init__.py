"""The OAuth 2.0 authorization server Alexa and IFTTT link through (authlib on aiohttp).

``setup_oauth(app, core, settings)`` adds ``/oauth/...`` and
``/.well-known/oauth-authorization-server`` to the root application, plus a cleanup context
that loads the config file's clients at startup and writes grant bookkeeping at shutdown;
``periodic_tasks(core)`` keep that bookkeeping flushed while the app runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.integration import PeriodicTask
from staterelay.core import Core
from staterelay.core.errors import StorageFull
from staterelay.core.oauth_clients import issuer_url
from staterelay.oauth import consent, views
from staterelay.oauth.views import ISSUER_KEY
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

FLUSH_INTERVAL: Final = 10.0
PURGE_INTERVAL: Final = 3600.0


def create_oauth_routes() -> list[web.AbstractRouteDef]:
    """Every OAuth route, for the root application."""
    return [*consent.routes, *views.routes]


def setup_oauth(app: web.Application, core: Core, settings: Settings) -> None:
    """Add the OAuth routes and their startup/cleanup work to the root application.

    Call it after the store's cleanup context is registered, so the store is open first.
    """
    app[ISSUER_KEY] = issuer_url(settings.public_url, settings.server.hosts.auth)
    app.router.add_routes(create_oauth_routes())
    app.cleanup_ctx.append(_oauth_context)


def periodic_tasks(core: Core) -> tuple[PeriodicTask, ...]:
    """Flush grants' last-used times and drop successor pairs past their window often;
    purge expired codes and tokens hourly."""

    async def flush() -> None:
        await core.oauth.flush_last_used()
        await core.oauth.drop_expired_successors()

    return (
        PeriodicTask("oauth-last-used", FLUSH_INTERVAL, flush),
        PeriodicTask("oauth-purge", PURGE_INTERVAL, core.oauth.purge),
    )


async def _oauth_context(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE_KEY]
    loaded = await core.oauth.load_config_clients()
    if loaded:
        _LOGGER.info("loaded %d OAuth client(s) from the config file", loaded)
    try:
        yield
    finally:
        try:
            await core.oauth.flush_last_used(force=True)
        except StorageFull:
            _LOGGER.warning("linked apps' last-used times were not saved: the disk is full")


__all__ = ["ISSUER_KEY", "create_oauth_routes", "periodic_tasks", "setup_oauth"]
