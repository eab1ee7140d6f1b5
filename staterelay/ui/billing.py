"""The billing page: plans and limits when billing is on, and a plain statement when it is off."""

from __future__ import annotations

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.household import all_devices
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render

routes = web.RouteTableDef()


@routes.get("/dashboard/billing", name="billing")
async def billing(request: web.Request) -> web.StreamResponse:
    """Self-hosted (billing off): no plan, no limits. Hosted: the plan and what it allows."""
    _, principal = await require_principal(request)
    enabled = request.config_dict[SETTINGS_KEY].billing.enabled
    core = request.config_dict[CORE_KEY]
    devices = len(await all_devices(core, principal)) if enabled else None
    return render(
        request,
        "billing.html",
        {
            "nav": "settings",
            "enabled": enabled,
            "devices": devices,
            "device_limit": core.config.max_devices,
        },
    )
