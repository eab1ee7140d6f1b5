"""Device pages: the list, creating one, a device's page (controls, settings, API, activity).

Every action is a plain form POST answered with a 303, so it works without JavaScript; the
page's script sends the same form with ``fetch`` and ``Accept: application/json`` and gets
the device back as JSON, and the WebSocket brings everyone else's changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.household import all_devices, webhook_name
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render
from staterelay.browser.sessions import safe_next
from staterelay.core import Core
from staterelay.core.device_types import DEVICE_TYPES, TEMPERATURE_SCALES
from staterelay.core.errors import (
    Conflict,
    InvalidInput,
    LimitReached,
    NotFound,
    PlanLimit,
    StateRelayError,
)
from staterelay.core.records import Device, Principal
from staterelay.core.webhooks import MAX_WEBHOOKS_PER_TENANT
from staterelay.ui.present import (
    TYPE_HINTS,
    TYPE_LABELS,
    activity_view,
    curl_snippet,
    device_view,
    room_choices,
)

SOURCE: Final = "ui"
STATE_FIELDS: Final = ("power", "brightness", "detection", "temperature")
ACTIVITY_PAGE: Final = 25
NOTICES: Final = {
    "created": "The device was created.",
    "saved": "Your changes were saved.",
    "deleted": "The device was deleted. Alexa, IFTTT and your webhooks are being told.",
}

routes = web.RouteTableDef()


async def webhook_names(core: Core, principal: Principal) -> dict[str, str]:
    """The tenant's webhooks by id, named for delivery rows."""
    page = await core.webhooks.list(principal, limit=MAX_WEBHOOKS_PER_TENANT)
    return {hook.id: webhook_name(hook) for hook in page.items}


def wants_json(request: web.Request) -> bool:
    """True when the page's script sent the form and wants the device back as JSON."""
    return "application/json" in request.headers.get("Accept", "")


# the list and creating -------------------------------------------------------------------------
@routes.get("/dashboard/devices", name="devices")
async def device_list(request: web.Request) -> web.StreamResponse:
    """Every device with its type and state."""
    _, principal = await require_principal(request)
    devices = await all_devices(request.config_dict[CORE_KEY], principal)
    return render(
        request,
        "devices.html",
        {
            "nav": "devices",
            "devices": [device_view(device) for device in devices],
            "notice": NOTICES.get(request.query.get("done", "")),
        },
    )


@routes.get("/dashboard/devices/new", name="device_new")
async def new_device_form(request: web.Request) -> web.StreamResponse:
    """The form that creates a device."""
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    rooms = await core.devices.rooms(principal)
    allowance = await core.billing.device_allowance(principal)  # hosted plans only
    plan_note = None
    if allowance is not None:
        count, plan = allowance
        plan_note = (
            f"You have {count} of the {plan.limits.devices} devices the {plan.name} plan allows."
        )
    form = {"type": request.query.get("type", "switch")}
    return _new_device_page(request, form, {}, rooms, plan_note=plan_note)


@routes.post("/dashboard/devices/new")
async def create_device(request: web.Request) -> web.StreamResponse:
    """Create a device, then show its page."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    devices = request.config_dict[CORE_KEY].devices
    kind = form.get("type", "")
    options: dict[str, Any] = {}
    if kind == "switch":
        options["routine_trigger"] = form.get("routine_trigger") == "on"
    if kind == "temperature_sensor" and form.get("scale"):
        options["scale"] = form["scale"]
    try:
        device = await devices.create(
            principal,
            type=kind,
            name=form.get("name", ""),
            description=form.get("description", ""),
            options=options,
            room=form.get("room", ""),
            source=SOURCE,
        )
    except (InvalidInput, Conflict) as error:
        errors = _field_errors(error, form)
        rooms = await devices.rooms(principal)
        return _new_device_page(request, form, errors, rooms, status=error.status)
    except LimitReached as error:
        rooms = await devices.rooms(principal)
        errors = {"form": _sentence(error.detail)}
        return _new_device_page(request, form, errors, rooms, status=409)
    except PlanLimit as error:
        rooms = await devices.rooms(principal)
        errors = {"form": _sentence(error.detail), "upgrade_url": "/dashboard/billing"}
        return _new_device_page(request, form, errors, rooms, status=402)
    raise web.HTTPSeeOther(location=f"/dashboard/devices/{device.id}?done=created")


def _new_device_page(
    request: web.Request,
    form: Mapping[str, str],
    errors: Mapping[str, str],
    rooms: Sequence[str],
    *,
    status: int = 200,
    plan_note: str | None = None,
) -> web.Response:
    chosen = form.get("type", "switch")
    return render(
        request,
        "device_new.html",
        {
            "nav": "devices",
            "types": [
                {"name": name, "label": TYPE_LABELS[name], "hint": TYPE_HINTS[name]}
                for name in DEVICE_TYPES
            ],
            "chosen": chosen if chosen in DEVICE_TYPES else "switch",
            "name": form.get("name", ""),
            "description": form.get("description", ""),
            "room": form.get("room", ""),
            "rooms": room_choices(rooms),
            # New switches can start Routines unless the form said otherwise.
            "routine_trigger": form.get("routine_trigger") == "on" or "name" not in form,
            "scale": form.get("scale", "CELSIUS"),
            "scales": TEMPERATURE_SCALES,
            "errors": errors,
            "plan_note": plan_note,
        },
        status=status,
    )


# a device's page -------------------------------------------------------------------------------
@routes.get("/dashboard/devices/{device_id}", name="device")
async def device_detail(request: web.Request) -> web.StreamResponse:
    """A device: its controls, settings, API snippet and activity with delivery results."""
    _, principal = await require_principal(request)
    return await device_page(
        request,
        principal,
        request.match_info["device_id"],
        notice=NOTICES.get(request.query.get("done", "")),
    )


async def device_page(
    request: web.Request,
    principal: Principal,
    device_id: str,
    *,
    notice: str | None = None,
    control_errors: Mapping[str, str] | None = None,
    settings_errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """Render a device's page (also with errors next to the fields of a refused form)."""
    core = request.config_dict[CORE_KEY]
    device = await core.devices.get(principal, device_id)
    cursor = request.query.get("cursor") or None
    page = await core.activity.list(
        principal, device_id=device.id, cursor=cursor, limit=ACTIVITY_PAGE, require_device=True
    )
    types = {device.id: device.type}
    hooks = await webhook_names(core, principal)
    view = device_view(device)
    rooms = room_choices(await core.devices.rooms(principal))
    return render(
        request,
        "device.html",
        {
            "nav": "devices",
            "device": view,
            "notice": notice,
            "control_errors": control_errors or {},
            "settings_errors": settings_errors or {},
            "values": values or {},
            "rooms": rooms,
            "curl": curl_snippet(request.config_dict[SETTINGS_KEY], device),
            "activity": [activity_view(entry, types, hooks) for entry in page.items],
            "first_page": cursor is None,
            "next_cursor": page.next_cursor,
            "next": f"/dashboard/devices/{device.id}",
            "suspended": await core.billing.is_suspended(principal.tenant_id, device.id),
        },
        status=status,
    )


@routes.post("/dashboard/devices/{device_id}/settings", name="device_settings")
async def save_settings(request: web.Request) -> web.StreamResponse:
    """Rename a device, change its description or its options."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    device_id = request.match_info["device_id"]
    device = await core.devices.get(principal, device_id)
    fields: dict[str, Any] = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "room": form.get("room", ""),
    }
    if device.type == "switch":
        fields["options"] = {"routine_trigger": form.get("routine_trigger") == "on"}
    try:
        await core.devices.update(principal, device_id, fields=fields, source=SOURCE)
    except (InvalidInput, Conflict) as error:
        return await device_page(
            request,
            principal,
            device_id,
            settings_errors=_field_errors(error, form),
            values=form,
            status=error.status,
        )
    raise web.HTTPSeeOther(location=f"/dashboard/devices/{device_id}?done=saved")


@routes.get("/dashboard/devices/{device_id}/delete", name="device_delete")
async def confirm_delete(request: web.Request) -> web.StreamResponse:
    """Ask before deleting."""
    _, principal = await require_principal(request)
    device = await request.config_dict[CORE_KEY].devices.get(
        principal, request.match_info["device_id"]
    )
    return render(request, "device_delete.html", {"nav": "devices", "device": device_view(device)})


@routes.post("/dashboard/devices/{device_id}/delete")
async def delete_device(request: web.Request) -> web.StreamResponse:
    """Delete the device; every integration is told, so no ghost device remains."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    await request.config_dict[CORE_KEY].devices.delete(
        principal, request.match_info["device_id"], source=SOURCE
    )
    raise web.HTTPSeeOther(location="/dashboard/devices?done=deleted")


# actions: set state, press ---------------------------------------------------------------------
@routes.post("/dashboard/devices/{device_id}/state", name="device_set_state")
async def set_state(request: web.Request) -> web.StreamResponse:
    """Change one or more properties from a card's form."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    core = request.config_dict[CORE_KEY]
    device_id = request.match_info["device_id"]
    try:
        device = await core.devices.set_state(
            principal, device_id, state_values(form), source=SOURCE
        )
    except NotFound:
        raise
    except StateRelayError as error:
        return await _refused(request, principal, device_id, form, error)
    return _done(request, form, device)


@routes.post("/dashboard/devices/{device_id}/press", name="device_press")
async def press(request: web.Request) -> web.StreamResponse:
    """Press a button."""
    form = await read_form(request)
    await verify_csrf(request, form)
    _, principal = await require_principal(request)
    device_id = request.match_info["device_id"]
    try:
        device = await request.config_dict[CORE_KEY].devices.press(
            principal, device_id, source=SOURCE
        )
    except NotFound:
        raise
    except StateRelayError as error:
        return await _refused(request, principal, device_id, form, error)
    return _done(request, form, device)


def state_values(form: Mapping[str, str]) -> dict[str, Any]:
    """The form's property values, typed as core expects them; ``InvalidInput`` otherwise."""
    values: dict[str, Any] = {}
    for name in STATE_FIELDS:
        if name not in form:
            continue
        text = form[name].strip()
        if name == "brightness":
            values[name] = _whole_number(text)
        elif name == "temperature":
            values[name] = _reading(text)
        else:
            values[name] = text
    if not values:
        raise InvalidInput("nothing to change was sent")
    return values


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(
            "brightness must be a whole number from 0 to 100", field="brightness"
        ) from None


def _reading(text: str) -> float:
    if not text:
        raise InvalidInput("enter a temperature", field="temperature")
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise InvalidInput("temperature must be a number", field="temperature") from None
    if not math.isfinite(value):
        raise InvalidInput("temperature must be a number", field="temperature")
    return value


def _done(request: web.Request, form: Mapping[str, str], device: Device) -> web.StreamResponse:
    if wants_json(request):
        return web.json_response({"device": device_view(device)})
    raise web.HTTPSeeOther(location=safe_next(form.get("next"), "/dashboard"))


async def _refused(
    request: web.Request,
    principal: Principal,
    device_id: str,
    form: Mapping[str, str],
    error: StateRelayError,
) -> web.StreamResponse:
    """The device's page again with the message next to the field (or JSON for the script)."""
    errors = _field_errors(error)
    if wants_json(request):
        ((field, message),) = errors.items()
        return web.json_response({"error": message, "field": field}, status=error.status)
    return await device_page(
        request,
        principal,
        device_id,
        control_errors=errors,
        values={k: v for k, v in form.items() if k in STATE_FIELDS},
        status=error.status,
    )


def _field_errors(error: StateRelayError, form: Mapping[str, str] | None = None) -> dict[str, str]:
    """A domain error as ``{field: sentence}``; ``options.scale`` is the ``scale`` field."""
    field = (error.field or "form").split(".")[-1]
    if isinstance(error, Conflict) and field == "name" and form is not None:
        name = form.get("name", "").strip()
        return {"name": f"There is a device called “{name}” already. Choose another name."}
    return {field: _sentence(error.detail)}


def _sentence(detail: str) -> str:
    text = detail[:1].upper() + detail[1:]
    return text if text.endswith(".") else text + "."
