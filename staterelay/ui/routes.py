"""The UI's route table, its landing page, static files and the first-run setup link."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from aiohttp import web

from staterelay.keys import CORE_KEY
from staterelay.ui import account, signin
from staterelay.web.render import render
from staterelay.web.state import core_of

_LOGGER = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
SETUP_PATH: Final = "/setup"

routes = web.RouteTableDef()


@routes.get("/", name="home")
async def home(request: web.Request) -> web.StreamResponse:
    """What StateRelay is, and the way in."""
    return render(request, "index.html", {"registration": core_of(request).accounts.registration})


def ui_routes() -> list[web.AbstractRouteDef]:
    """Every UI route, for the root app (these paths live at the root, not in a sub-app)."""
    return [*routes, *signin.routes, *account.routes, web.static("/static", STATIC_DIR)]


async def announce_setup_link(app: web.Application) -> None:
    """On start-up of an invite-mode instance without users, log the one-time setup link."""
    core = app[CORE_KEY]
    token = await core.accounts.begin_setup()
    if token is not None:
        _LOGGER.info(
            "No account exists yet: open %s%s?token=%s to create the admin account "
            "(the link works once; a restart makes a new one)",
            core.config.public_url,
            SETUP_PATH,
            token,
        )
