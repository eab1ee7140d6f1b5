"""The activity log of the whole household: filter by device and source, page by cursor."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.browser.household import all_devices
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.core.records import SOURCES
from staterelay.ui.devices import webhook_names
from staterelay.ui.present import SOURCE_LABELS, activity_view

ACTIVITY_PAGE: Final = 50

routes = web.RouteTableDef()


@routes.get("/dashboard/activity", name="activity")
async def activity(request: web.Request) -> web.StreamResponse:
    """Newest first: state changes, device changes and every delivery's result."""
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    devices = await all_devices(core, principal)
    device_id = request.query.get("device") or None
    source = request.query.get("source") or None
    if source is not None and source not in SOURCES:
        source = None
    cursor = request.query.get("cursor") or None
    page = await core.activity.list(
        principal, device_id=device_id, source=source, cursor=cursor, limit=ACTIVITY_PAGE
    )
    filters = {key: value for key, value in (("device", device_id), ("source", source)) if value}
    next_link = None
    if page.next_cursor:
        next_link = "/dashboard/activity?" + urlencode({**filters, "cursor": page.next_cursor})
    types = {device.id: device.type for device in devices}
    hooks = await webhook_names(core, principal)
    return render(
        request,
        "activity.html",
        {
            "nav": "activity",
            "entries": [activity_view(entry, types, hooks) for entry in page.items],
            "devices": [{"id": device.id, "name": device.name} for device in devices],
            "sources": [(name, SOURCE_LABELS.get(name, name)) for name in SOURCES],
            "device_id": device_id,
            "source": source,
            "filtered": bool(filters),
            "first_page": cursor is None,
            "next_link": next_link,
            "first_link": "/dashboard/activity" + ("?" + urlencode(filters) if filters else ""),
        },
    )
