"""The dashboard: device cards with live state, the snapshot a reconnecting page reads."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.browser.household import all_devices
from staterelay.browser.principal import require_principal, session_principal
from staterelay.browser.render import render
from staterelay.browser.sessions import current_user, safe_next
from staterelay.ui.devices import webhook_names
from staterelay.ui.integrations import card_views
from staterelay.ui.present import activity_view, device_view, room_groups

RECENT: Final = 8

routes = web.RouteTableDef()


@routes.get("/dashboard", name="dashboard")
async def dashboard(request: web.Request) -> web.StreamResponse:
    """Every device as a card, integrations at a glance and the latest activity."""
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    devices = await all_devices(core, principal)
    types = {device.id: device.type for device in devices}
    recent = await core.activity.list(principal, limit=RECENT)
    hooks = await webhook_names(core, principal)
    views = [device_view(device) for device in devices]
    return render(
        request,
        "dashboard.html",
        {
            "nav": "dashboard",
            "devices": views,
            "groups": room_groups(views),
            "integrations": await card_views(request, principal),
            "activity": [activity_view(entry, types, hooks) for entry in recent.items],
            "next": "/dashboard",
        },
    )


@routes.get("/dashboard/state.json", name="dashboard_state")
async def state_snapshot(request: web.Request) -> web.StreamResponse:
    """Fresh state for a page that reconnects: every device and the newest activity."""
    signed_in = await current_user(request)
    if signed_in is None:
        return web.json_response({"error": "signed out"}, status=401)
    principal = session_principal(signed_in)
    core = request.config_dict[CORE_KEY]
    devices = await all_devices(core, principal)
    types = {device.id: device.type for device in devices}
    recent = await core.activity.list(principal, limit=50)
    hooks = await webhook_names(core, principal)
    response = web.json_response(
        {
            "devices": [device_view(device) for device in devices],
            "activity": [activity_view(entry, types, hooks) for entry in recent.items],
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/dashboard/devices/{device_id}/card", name="device_card")
async def device_card(request: web.Request) -> web.StreamResponse:
    """One device's card as an HTML fragment, for a page that learns of a new device."""
    _, principal = await require_principal(request)
    device = await request.config_dict[CORE_KEY].devices.get(
        principal, request.match_info["device_id"]
    )
    return render(
        request,
        "device_card.html",
        {"device": device_view(device), "next": safe_next(request.query.get("next"), "/dashboard")},
    )
