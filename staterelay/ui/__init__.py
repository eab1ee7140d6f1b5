"""The browser UI at the root of the URL space: landing, sign-in, setup and the dashboard."""

from __future__ import annotations

from staterelay.ui.live import LIVE_KEY, LiveHub
from staterelay.ui.routes import SETUP_PATH, announce_setup_link, setup_ui, ui_routes

__all__ = [
    "LIVE_KEY",
    "SETUP_PATH",
    "LiveHub",
    "announce_setup_link",
    "setup_ui",
    "ui_routes",
]
