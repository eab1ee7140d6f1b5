"""JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the API's request and response bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from staterelay.core.auth import KEY_DEVICES_MAX
from staterelay.core.device_types import (
    DETECTION_VALUES,
    DEVICE_TYPES,
    POWER_VALUES,
    ROOM_MAX,
    TEMPERATURE_SCALES,
)
from staterelay.core.records import SCOPES, SOURCES
from staterelay.core.webhook_formats import FORMATS, MAKER_URL
from staterelay.core.webhooks import EVENT_TYPES

JSONObject = dict[str, Any]


def schema_ref(name: str) -> JSONObject:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> JSONObject:
    return {"type": [kind, "null"], **extra}


_TIME: Final = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: Final = _nullable("string", format="date-time")


def _page(item: str) -> JSONObject:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": schema_ref(item)},
            "next_cursor": _nullable(
                "string", description="Pass as `cursor` for the next page; null on the last."
            ),
        },
    }


def _object(
    properties: JSONObject, *, required: Sequence[str] = (), closed: bool = False
) -> JSONObject:
    schema: JSONObject = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


_PROPERTY_SCHEMAS: Final[dict[str, JSONObject]] = {
    "power": {
        "type": ["string", "boolean"],
        "description": f"{' or '.join(POWER_VALUES)} (any case), or a boolean.",
    },
    "brightness": {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "description": (
            "A dimmer's level in percent. A dimmer is never on at 0: brightness 0 switches it"
            " off and keeps its last level (turning it on again restores that level); a level"
            " above 0 without `power` switches it on."
        ),
    },
    "detection": {
        "type": ["string", "boolean"],
        "description": f"{' or '.join(DETECTION_VALUES)} (any case), or a boolean.",
    },
    "temperature": {
        "anyOf": [
            {"type": "number", "description": "A reading in the device's scale."},
            _object(
                {"value": {"type": "number"}, "scale": {"enum": list(TEMPERATURE_SCALES)}},
                required=["value"],
                closed=True,
            ),
        ]
    },
}


def _state_updateschema_ref() -> JSONObject:
    names = sorted(
        {
            spec.name
            for kind in DEVICE_TYPES.values()
            if not kind.momentary
            for spec in kind.properties
        }
    )
    return {
        "type": "object",
        "minProperties": 1,
        "description": "Some of the device's properties; the others keep their values.",
        "properties": {name: _PROPERTY_SCHEMAS.get(name, {}) for name in names},
        "additionalProperties": False,
    }


def component_schemas() -> JSONObject:
    """Every schema of the document's ``components``, by name."""
    device_fields = {
        "description": _nullable("string", maxLength=128),
        "room": _nullable(
            "string",
            maxLength=ROOM_MAX,
            description="The room it is in; empty or null for none. A room the household "
            "has already is matched regardless of letter case.",
        ),
        "options": _nullable(
            "object",
            description="routine_trigger (switch, boolean) or scale (temperature_sensor).",
        ),
    }
    webhook_fields = {
        "description": _nullable("string", maxLength=256),
        "device_ids": _nullable(
            "array", items={"type": "string"}, description="Only these devices; null for all."
        ),
        "event_types": _nullable(
            "array",
            items={"enum": list(EVENT_TYPES)},
            description="Only these events; null for all.",
        ),
        "enabled": {"type": "boolean"},
        "format": {
            "enum": list(FORMATS),
            "description": "standard: signed event JSON. ifttt_webhooks: IFTTT's Webhooks "
            "trigger (value1 device, value2 property, value3 new value); url defaults to "
            f"{MAKER_URL}.",
        },
        "ifttt_event": _nullable(
            "string", pattern="^[A-Za-z0-9_]{1,64}$", description="ifttt_webhooks: event name."
        ),
        "ifttt_key": _nullable(
            "string",
            description="ifttt_webhooks: the key from IFTTT's Webhooks settings; never shown.",
        ),
    }
    state = {
        "state": {"type": "object", "description": "Property name to value."},
        "state_changed_at": {"type": "object", "additionalProperties": _TIME},
    }
    webhook = {
        "id": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "description": {"type": "string"},
        "device_ids": _nullable("array", items={"type": "string"}),
        "event_types": _nullable("array", items={"type": "string"}),
        "enabled": {"type": "boolean"},
        "disabled_reason": _nullable("string"),
        "format": {"enum": list(FORMATS)},
        "ifttt_event": _nullable("string"),
        "created_at": _TIME,
        "updated_at": _TIME,
    }
    api_key = {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "prefix": {"type": "string", "description": "The first characters of the secret."},
        "scope": {"enum": list(SCOPES)},
        "scopes": {"type": "array", "items": {"enum": list(SCOPES)}},
        "device_ids": _nullable(
            "array",
            items={"type": "string"},
            description="The only devices this key reaches; null: every device.",
        ),
        "created_at": _TIME,
        "last_used_at": _TIME_OR_NULL,
        "revoked_at": _TIME_OR_NULL,
    }
    return {
        "Problem": _object(
            {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string", "description": "Stable and machine-readable."},
                "field": {"type": "string", "description": "The field or header at fault."},
            },
            required=["type", "title", "status", "detail", "code"],
        ),
        "Device": _object(
            {
                "id": {"type": "string"},
                "type": {"enum": list(DEVICE_TYPES)},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "room": {"type": "string", "description": "The room it is in; empty for none."},
                "options": {"type": "object"},
                **state,
                "version": {"type": "integer", "minimum": 1},
                "created_at": _TIME,
                "updated_at": _TIME,
            },
            required=[
                "id",
                "type",
                "name",
                "description",
                "room",
                "options",
                "state",
                "state_changed_at",
                "version",
                "created_at",
                "updated_at",
            ],
        ),
        "DeviceCreate": _object(
            {
                "type": {"enum": list(DEVICE_TYPES)},
                "name": {"type": "string", "minLength": 1, "maxLength": 128},
                **device_fields,
            },
            required=["type", "name"],
            closed=True,
        ),
        "DeviceUpdate": _object(
            {"name": {"type": "string", "minLength": 1, "maxLength": 128}, **device_fields},
            closed=True,
        ),
        "DeviceList": _page("Device"),
        "DeviceState": _object(
            {"device_id": {"type": "string"}, **state, "version": {"type": "integer"}},
            required=["device_id", "state", "state_changed_at", "version"],
        ),
        "StateUpdate": _state_updateschema_ref(),
        "ActivityEntry": _object(
            {
                "id": {"type": "integer"},
                "device_id": _nullable("string"),
                "device_name": _nullable("string"),
                "kind": {"type": "string", "description": "state, press, device.created, ..."},
                "source": {"enum": list(SOURCES)},
                "actor": _nullable("string"),
                "cause": _nullable("string"),
                "property": _nullable("string"),
                "old_value": {},
                "new_value": {},
                "detail": {"type": "object"},
                "created_at": _TIME,
            },
            required=["id", "device_id", "kind", "source", "old_value", "new_value", "created_at"],
        ),
        "ActivityList": _page("ActivityEntry"),
        "Webhook": _object(webhook, required=list(webhook)),
        "WebhookCreated": {
            "allOf": [
                schema_ref("Webhook"),
                _object(
                    {
                        "secret": {
                            "type": "string",
                            "description": "The Standard Webhooks signing secret; shown once.",
                        }
                    },
                    required=["secret"],
                ),
            ]
        },
        "WebhookCreate": _object(
            {
                "url": {
                    "type": "string",
                    "format": "uri",
                    "description": "Required unless format is ifttt_webhooks.",
                },
                **webhook_fields,
            },
            closed=True,
        ),
        "WebhookUpdate": _object(
            {"url": {"type": "string", "format": "uri"}, **webhook_fields}, closed=True
        ),
        "WebhookList": _page("Webhook"),
        "WebhookTestQueued": _object(
            {
                "webhook_id": {"type": "string"},
                "event_type": {"const": "webhook.test"},
                "status": {"const": "queued"},
            },
            required=["webhook_id", "event_type", "status"],
        ),
        "WebhookDelivery": _object(
            {
                "id": {"type": "integer"},
                "event_id": {"type": "string"},
                "event_type": {"type": "string"},
                "attempt": {"type": "integer"},
                "status_code": _nullable("integer"),
                "error": _nullable("string"),
                "duration_ms": {"type": "number"},
                "created_at": _TIME,
            },
            required=[
                "id",
                "event_id",
                "event_type",
                "attempt",
                "status_code",
                "error",
                "duration_ms",
                "created_at",
            ],
        ),
        "WebhookDeliveryList": _page("WebhookDelivery"),
        "Me": _object(
            {
                "user_id": {"type": "string"},
                "email": {"type": "string"},
                "tenant_id": {"type": "string"},
                "scopes": {"type": "array", "items": {"enum": list(SCOPES)}},
                "credential": {
                    "type": "string",
                    "description": "How the caller authenticated: api_key, oauth, ...",
                },
                "credential_id": {"type": "string"},
                "client_id": _nullable("string"),
                "device_ids": _nullable(
                    "array",
                    items={"type": "string"},
                    description="A device-scoped API key's devices; null: every device.",
                ),
            },
            required=["user_id", "email", "tenant_id", "scopes", "credential"],
        ),
        "ApiKey": _object(api_key, required=list(api_key)),
        "ApiKeyCreated": {
            "allOf": [
                schema_ref("ApiKey"),
                _object(
                    {"key": {"type": "string", "description": "The secret; shown once."}},
                    required=["key"],
                ),
            ]
        },
        "ApiKeyCreate": _object(
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 64},
                "scope": {"enum": list(SCOPES)},
                "device_ids": _nullable(
                    "array",
                    items={"type": "string"},
                    minItems=1,
                    maxItems=KEY_DEVICES_MAX,
                    description=(
                        "Limit the key to these devices of the household: other devices answer"
                        " 404, and the key cannot create or delete devices or manage the"
                        " account. Null or absent: every device."
                    ),
                ),
            },
            required=["name", "scope"],
            closed=True,
        ),
        "ApiKeyList": _page("ApiKey"),
        "Grant": _object(
            {
                "id": {"type": "string"},
                "client_id": {"type": "string"},
                "client_name": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "created_at": {"type": "string", "format": "date-time"},
                "last_used_at": _nullable("string"),
            },
            required=["id", "client_id", "client_name", "scopes", "created_at", "last_used_at"],
        ),
        "GrantList": _page("Grant"),
    }
