"""Records to API JSON: the one place that decides what each resource looks like on the wire."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from staterelay.core.clock import iso
from staterelay.core.oauth import LinkedApp
from staterelay.core.records import (
    ActivityEntry,
    ApiKey,
    Device,
    Page,
    Principal,
    User,
    Webhook,
    WebhookDelivery,
)
from staterelay.jsoncodec import encode

T = TypeVar("T")
JSONObject = dict[str, Any]


def device_json(device: Device) -> JSONObject:
    """A device with its current state."""
    return {
        "id": device.id,
        "type": device.type,
        "name": device.name,
        "description": device.description,
        "room": device.room,
        "options": dict(device.options),
        **_state_fields(device),
        "version": device.version,
        "created_at": iso(device.created_at),
        "updated_at": iso(device.updated_at),
    }


# Device records are immutable, and the store hands out the same record while its device is
# unchanged (SQLite remembers reads): the JSON of a record is made once. Keyed by identity,
# each entry holding its record so the identity cannot be reused while it is remembered.
_DEVICE_BODIES: dict[int, tuple[Device, bytes]] = {}
DEVICE_BODIES_MAX: Final = 1024


def device_body(device: Device) -> bytes:
    """``device_json`` encoded, made once per record."""
    remembered = _DEVICE_BODIES.get(id(device))
    if remembered is not None and remembered[0] is device:
        return remembered[1]
    body = encode(device_json(device))
    if len(_DEVICE_BODIES) >= DEVICE_BODIES_MAX:
        _DEVICE_BODIES.clear()
    _DEVICE_BODIES[id(device)] = (device, body)
    return body


def state_json(device: Device) -> JSONObject:
    """Just a device's state and version."""
    return {"device_id": device.id, **_state_fields(device), "version": device.version}


def _state_fields(device: Device) -> JSONObject:
    return {
        "state": {name: prop.value for name, prop in device.properties.items()},
        "state_changed_at": {
            name: iso(prop.changed_at) for name, prop in device.properties.items()
        },
    }


def activity_json(entry: ActivityEntry) -> JSONObject:
    """One row of the activity log."""
    return {
        "id": entry.id,
        "device_id": entry.device_id,
        "device_name": entry.device_name,
        "kind": entry.kind,
        "source": entry.source,
        "actor": entry.actor,
        "cause": entry.cause,
        "property": entry.property,
        "old_value": entry.old_value,
        "new_value": entry.new_value,
        "detail": dict(entry.detail),
        "created_at": iso(entry.created_at),
    }


def webhook_json(webhook: Webhook, *, secret: str | None = None) -> JSONObject:
    """A webhook; the signing secret only when it was just created."""
    body: JSONObject = {
        "id": webhook.id,
        "url": webhook.url,
        "description": webhook.description,
        "device_ids": list(webhook.device_ids) if webhook.device_ids is not None else None,
        "event_types": list(webhook.event_types) if webhook.event_types is not None else None,
        "enabled": webhook.enabled,
        "disabled_reason": webhook.disabled_reason,
        "format": webhook.format,
        "ifttt_event": webhook.ifttt_event,
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
    }
    if secret is not None:
        body["secret"] = secret
    return body


def delivery_json(delivery: WebhookDelivery) -> JSONObject:
    """One delivery attempt of a webhook."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "attempt": delivery.attempt,
        "status_code": delivery.status_code,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
        "created_at": iso(delivery.created_at),
    }


def api_key_json(key: ApiKey, *, secret: str | None = None) -> JSONObject:
    """An API key; the secret only when it was just created."""
    body: JSONObject = {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scope": "write" if "write" in key.scopes else "read",
        "scopes": list(key.scopes),
        "device_ids": None if key.device_ids is None else list(key.device_ids),
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }
    if secret is not None:
        body["key"] = secret
    return body


def me_json(principal: Principal, user: User) -> JSONObject:
    """Who the caller is and what the credential may do."""
    return {
        "user_id": user.id,
        "email": user.email,
        "tenant_id": principal.tenant_id,
        "scopes": sorted(principal.scopes),
        "credential": principal.credential,
        "credential_id": principal.credential_id,
        "client_id": principal.client_id,
        "device_ids": None if principal.device_ids is None else sorted(principal.device_ids),
    }


def page_json(page: Page[T], item_json: Callable[[T], JSONObject]) -> JSONObject:
    """A list page: ``items`` and the cursor of the next page (null on the last)."""
    return {"items": [item_json(item) for item in page.items], "next_cursor": page.next_cursor}


def grant_json(app: LinkedApp) -> JSONObject:
    """A linked app: which client, since when, last used, what it may do."""
    return {
        "id": app.grant_id,
        "client_id": app.client_id,
        "client_name": app.client_name,
        "scopes": list(app.scopes),
        "created_at": iso(app.created_at),
        "last_used_at": iso(app.last_used_at),
    }
