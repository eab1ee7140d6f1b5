"""The OAuth 2.0 authorization server Alexa and IFTTT link through (authlib on aiohttp).

``setup_oauth(app, core, settings)`` adds ``/oauth/...`` and
``/.well-known/oauth-authorization-server`` to the root application, plus a cleanup context
that loads the config file's clients at startup and keeps grant bookkeeping flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.core import Core
from staterelay.core.errors import StorageFull
from staterelay.core.oauth_clients import issuer_url
from staterelay.oauth import consent, views
from staterelay.oauth.views import ISSUER_KEY
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

FLUSH_INTERVAL = 10.0
PURGE_INTERVAL = 3600.0


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


async def _oauth_context(app: web.Application) -> AsyncIterator[None]:
    core = app[CORE_KEY]
    loaded = await core.oauth.load_config_clients()
    if loaded:
        _LOGGER.info("loaded %d OAuth client(s) from the config file", loaded)
    task = asyncio.create_task(_housekeeping(core), name="oauth-housekeeping")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await core.oauth.flush_last_used(force=True)
        except StorageFull:
            _LOGGER.warning("linked apps' last-used times were not saved: the disk is full")


async def _housekeeping(core: Core) -> None:
    """Flush grants' last-used times and drop successor pairs past their window often;
    purge expired codes and tokens hourly."""
    last_purge = 0.0
    while True:
        try:
            await core.oauth.flush_last_used()
            await core.oauth.drop_expired_successors()
            if time.monotonic() - last_purge >= PURGE_INTERVAL:
                last_purge = time.monotonic()
                await core.oauth.purge()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("OAuth housekeeping failed")
        await asyncio.sleep(FLUSH_INTERVAL)


__all__ = ["ISSUER_KEY", "create_oauth_routes", "setup_oauth"]
