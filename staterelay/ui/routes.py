"""The UI's route table, its landing page, static files, live updates and the setup link."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.addresses import reachable_urls
from staterelay.browser.render import render
from staterelay.browser.sessions import current_user
from staterelay.browser.state import core_of
from staterelay.ui import (
    account,
    activity,
    dashboard,
    devices,
    integrations,
    live,
    signin,
    webhooks,
)

_LOGGER = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
SETUP_PATH: Final = "/setup"

routes = web.RouteTableDef()


@routes.get("/", name="home")
async def home(request: web.Request) -> web.StreamResponse:
    """What StateRelay is, and the way in; signed-in people go straight to their dashboard."""
    if await current_user(request) is not None:
        raise web.HTTPSeeOther(location="/dashboard")
    return render(request, "index.html", {"registration": core_of(request).accounts.registration})


def ui_routes() -> list[web.AbstractRouteDef]:
    """Every UI route, for the root app (these paths live at the root, not in a sub-app)."""
    return [
        *routes,
        *signin.routes,
        *dashboard.routes,
        *devices.routes,
        *activity.routes,
        *integrations.routes,
        *webhooks.routes,
        *account.routes,
        *live.routes,
        web.static("/static", STATIC_DIR),
    ]


def setup_ui(app: web.Application) -> None:
    """Add the UI to the root app: routes, the live-update hub and the first-run setup link."""
    app.router.add_routes(ui_routes())
    app.cleanup_ctx.append(live.live_context)
    app.on_shutdown.append(live.close_live_connections)
    app.on_startup.append(announce_setup_link)


async def announce_setup_link(app: web.Application) -> None:
    """On start-up of an invite-mode instance without users, log the one-time setup link.

    Listening on every address without a public URL (``serve --host 0.0.0.0`` on a Pi),
    the link is logged for each address other machines can use, the ``.local`` name first.
    """
    core = app[CORE_KEY]
    token = await core.accounts.begin_setup()
    if token is None:
        return
    links = [f"{base}{SETUP_PATH}?token={token}" for base in reachable_urls(app[SETTINGS_KEY])]
    if len(links) == 1:
        _LOGGER.info(
            "No account exists yet: open %s to create the admin account "
            "(the link works once; a restart makes a new one)",
            links[0],
        )
        return
    _LOGGER.info(
        "No account exists yet: open one of these links to create the admin account "
        "(it works once; a restart makes a new one):\n%s",
        "\n".join(f"  {link}" for link in links),
    )
