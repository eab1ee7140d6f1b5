"""Typed application keys shared by the app factory and the adapters."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.core import Core
from staterelay.settings import Settings

SETTINGS_KEY: Final = web.AppKey("staterelay.settings", Settings)
CORE_KEY: Final = web.AppKey("staterelay.core", Core)
