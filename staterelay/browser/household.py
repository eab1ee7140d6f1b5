"""What pages show of a household, whichever adapter serves them: every device, and the
webhooks as the dashboard lists them, each with its delivery health.

The dashboard (``ui``) and the integrations' own pages (their cards and set-up guides) show
the same rows, so they read them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.render import when
from staterelay.core import Core
from staterelay.core.records import Device, Principal, Webhook, WebhookDelivery
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS

DEVICE_PAGE: Final = 300
WEBHOOK_PAGE: Final = 50
FAILING_RUN: Final = 3  # this many failed deliveries in a row, and a webhook shows red
EVENT_LABELS: Final = {
    "state.changed": "State changes",
    "button.pressed": "Button presses",
    "device.created": "Devices created",
    "device.updated": "Devices renamed or changed",
    "device.deleted": "Devices deleted",
}
FORMAT_LABELS: Final = {
    "standard": "Signed JSON (Standard Webhooks)",
    IFTTT_WEBHOOKS: "IFTTT Webhooks trigger",
}
_SEVERITY: Final = {"error": 3, "attention": 2, "off": 1, "linked": 0}


async def all_devices(core: Core, principal: Principal) -> list[Device]:
    """Every device of the principal's tenant, in creation order."""
    devices: list[Device] = []
    cursor: str | None = None
    while True:
        page = await core.devices.list(principal, cursor=cursor, limit=DEVICE_PAGE)
        devices.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return devices


def webhook_name(hook: Webhook) -> str:
    """What a webhook is called on pages: its description, else its IFTTT event or host."""
    if hook.description:
        return hook.description
    if hook.ifttt_event:
        return f"IFTTT {hook.ifttt_event}"
    return urlsplit(hook.url).hostname or hook.url


def webhook_health(
    hook: Webhook, recent: Sequence[WebhookDelivery], max_attempts: int
) -> dict[str, Any]:
    """Green when the last delivery succeeded, amber while one is retried, red when the
    last deliveries failed or one was given up; with the last error."""
    if not hook.enabled:
        reason = hook.disabled_reason or "turned off"
        return {"state": "off", "label": "Off", "detail": reason, "at": None}
    if not recent:
        return {"state": "off", "label": "Nothing sent yet", "detail": "", "at": None}
    last = recent[0]
    ok = last.status_code is not None and 200 <= last.status_code < 300
    if ok:
        return {"state": "linked", "label": "Delivered", "detail": "", "at": last.created_at}
    answer = f"answered {last.status_code}" if last.status_code is not None else "no answer"
    error = f"{answer}: {last.error}" if last.error else answer
    run = recent[:FAILING_RUN]
    all_failed = len(run) == FAILING_RUN and not any(
        d.status_code is not None and 200 <= d.status_code < 300 for d in run
    )
    if last.attempt >= max_attempts:
        return {"state": "error", "label": "Gave up", "detail": error, "at": last.created_at}
    if all_failed:
        return {"state": "error", "label": "Failing", "detail": error, "at": last.created_at}
    return {"state": "attention", "label": "Retrying", "detail": error, "at": last.created_at}


def worst_health(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The health of the row in the worst state, with that webhook's name."""
    row = max(rows, key=lambda r: _SEVERITY[r["health"]["state"]])
    return {**row["health"], "name": row.get("name", "")}


def webhook_row(hook: Webhook, device_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A webhook as a row of the list (with the names of the devices it is limited to)."""
    fmt = hook.format
    names = device_names or {}
    return {
        "id": hook.id,
        "url": hook.url,
        "host": (urlsplit(hook.url).hostname or "").lower() or hook.url,
        "name": webhook_name(hook),
        "description": hook.description,
        "enabled": hook.enabled,
        "disabled_reason": hook.disabled_reason,
        "format": fmt,
        "format_label": FORMAT_LABELS.get(fmt, fmt),
        "ifttt_event": hook.ifttt_event,
        "events": (
            "every event"
            if hook.event_types is None
            else ", ".join(EVENT_LABELS.get(name, name).lower() for name in hook.event_types)
        ),
        "devices": hook.device_ids,
        "device_names": None
        if hook.device_ids is None
        else [names.get(device_id, "a deleted device") for device_id in hook.device_ids],
        "created": when(hook.created_at),
    }


async def webhook_rows(request: web.Request, principal: Principal) -> list[dict[str, Any]]:
    """The principal's webhooks as rows of the list, each with its health."""
    core = request.config_dict[CORE_KEY]
    max_attempts = request.config_dict[SETTINGS_KEY].webhooks.max_attempts
    hooks = (await core.webhooks.list(principal, limit=WEBHOOK_PAGE)).items
    names = {device.id: device.name for device in await all_devices(core, principal)}
    rows = []
    for hook in hooks:
        recent = await core.webhooks.deliveries(principal, hook.id, cursor=None, limit=FAILING_RUN)
        row = webhook_row(hook, names)
        row["health"] = webhook_health(hook, recent.items, max_attempts)
        rows.append(row)
    return rows
