"""Device routes: list, create, read, change, delete, state and press."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.bodies import FieldSpec, read_fields, read_json_object
from staterelay.api.params import if_match_version, page_params
from staterelay.api.responses import json_body_response, json_response, no_content
from staterelay.api.serializers import device_body, device_json, page_json, state_json
from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY

SOURCE: Final = "api"

routes = web.RouteTableDef()

CREATE_FIELDS: Final = {
    "type": FieldSpec(("string",), required=True),
    "name": FieldSpec(("string",), required=True),
    "description": FieldSpec(("string", "null")),
    "options": FieldSpec(("object", "null")),
    "room": FieldSpec(("string", "null")),
}
UPDATE_FIELDS: Final = {
    "name": FieldSpec(("string",)),
    "description": FieldSpec(("string", "null")),
    "options": FieldSpec(("object", "null")),
    "room": FieldSpec(("string", "null")),
}


def device_url(request: web.Request, device_id: str) -> str:
    """The absolute path of a device, with the sub-app's prefix."""
    return str(request.app.router["device"].url_for(device_id=device_id))


@routes.get("/devices", name="devices", allow_head=False)
async def list_devices(request: web.Request) -> web.Response:
    """The household's devices in creation order."""
    params = page_params(request)
    page = await request.app[CORE_KEY].devices.list(
        principal_of(request), cursor=params.cursor, limit=params.limit
    )
    return json_response(page_json(page, device_json))


@routes.post("/devices", name="devices")
async def create_device(request: web.Request) -> web.Response:
    """Create a device with default state."""
    fields = await read_fields(request, CREATE_FIELDS)
    device = await request.app[CORE_KEY].devices.create(
        principal_of(request),
        type=fields["type"],
        name=fields["name"],
        description=fields.get("description"),
        options=fields.get("options"),
        room=fields.get("room"),
        source=SOURCE,
    )
    return json_response(
        device_json(device),
        status=201,
        version=device.version,
        location=device_url(request, device.id),
    )


@routes.get("/devices/{device_id}", name="device", allow_head=False)
async def get_device(request: web.Request) -> web.Response:
    """One device."""
    device = await request.app[CORE_KEY].devices.get(
        principal_of(request), request.match_info["device_id"]
    )
    return json_body_response(device_body(device), version=device.version)


@routes.patch("/devices/{device_id}", name="device")
async def update_device(request: web.Request) -> web.Response:
    """Rename a device or change its description, room or options."""
    if_version = if_match_version(request)
    fields = await read_fields(request, UPDATE_FIELDS)
    device = await request.app[CORE_KEY].devices.update(
        principal_of(request),
        request.match_info["device_id"],
        fields=fields,
        source=SOURCE,
        if_version=if_version,
    )
    return json_response(device_json(device), version=device.version)


@routes.delete("/devices/{device_id}", name="device")
async def delete_device(request: web.Request) -> web.Response:
    """Delete a device; Alexa, IFTTT and webhooks are told."""
    devices = request.app[CORE_KEY].devices
    principal = principal_of(request)
    device_id = request.match_info["device_id"]
    await devices.delete(principal, device_id, source=SOURCE, if_version=if_match_version(request))
    return no_content()


@routes.get("/devices/{device_id}/state", name="device_state", allow_head=False)
async def get_state(request: web.Request) -> web.Response:
    """A device's state and version."""
    device = await request.app[CORE_KEY].devices.get(
        principal_of(request), request.match_info["device_id"]
    )
    return json_response(state_json(device), version=device.version)


@routes.put("/devices/{device_id}/state", name="device_state")
async def put_state(request: web.Request) -> web.Response:
    """Change some properties; the body is an object of property values."""
    if_version = if_match_version(request)
    values = await read_json_object(
        request, max_bytes=request.app[SETTINGS_KEY].server.max_body_bytes
    )
    device = await request.app[CORE_KEY].devices.set_state(
        principal_of(request),
        request.match_info["device_id"],
        values,
        source=SOURCE,
        if_version=if_version,
    )
    return json_response(state_json(device), version=device.version)


@routes.post("/devices/{device_id}/press", name="device_press")
async def press(request: web.Request) -> web.Response:
    """Press a button."""
    device = await request.app[CORE_KEY].devices.press(
        principal_of(request), request.match_info["device_id"], source=SOURCE
    )
    return json_response(state_json(device), version=device.version)
