"""The browser UI at the root of the URL space: landing page, sign-in, setup, account."""

from __future__ import annotations

from staterelay.ui.routes import SETUP_PATH, announce_setup_link, ui_routes

__all__ = ["SETUP_PATH", "announce_setup_link", "ui_routes"]
