"""Fixtures of the application assembly's tests: the app's clock, app builders and browsers."""

from __future__ import annotations

from tests.web.support import browse, clock, make_app

__all__ = ["browse", "clock", "make_app"]
