"""REST API v1 (placeholder being built)."""

from __future__ import annotations

from aiohttp import web

from staterelay.core import Core
from staterelay.settings import Settings


def create_api_app(core: Core, settings: Settings) -> web.Application:
    """The API sub-application mounted at ``/api/v1/``."""
    return web.Application()
