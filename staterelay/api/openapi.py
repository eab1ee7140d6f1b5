"""The OpenAPI 3.1 document of API v1, declared here operation by operation.

Paths carry the full ``/api/v1`` prefix and the one server is relative (``/``), so the
document is right on whichever host serves it. A test checks that every route of the
sub-application is documented and every documented operation is routed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from staterelay.api import billing, integrations
from staterelay.api.schemas import JSONObject, component_schemas, schema_ref
from staterelay.core.records import SOURCES

PREFIX: Final = "/api/v1"
API_VERSION: Final = "1.0.0"
OPENAPI_KEY: Final = web.AppKey("staterelay.api.openapi", bytes)

routes = web.RouteTableDef()

ERROR_RESPONSES: Final = {
    "BadRequest": ("400", "The request cannot be parsed (malformed JSON, a bad cursor or header)."),
    "Unauthorized": ("401", "No bearer token, or one that is unknown, revoked or expired."),
    "Forbidden": (
        "403",
        "The credential lacks the scope this operation needs, or is a device-scoped key and"
        " the operation concerns the whole household (devices, keys, webhooks, linked apps).",
    ),
    "NotFound": (
        "404",
        "No such object in the caller's household, or a device a device-scoped key does not name.",
    ),
    "PaymentRequired": (
        "402",
        "Hosted instances with billing: the household's plan does not allow this (code"
        " `plan_limit`; `limit` names the limit, `upgrade_url` where to upgrade), or the device"
        " is suspended for being over the plan's device limit.",
    ),
    "Conflict": ("409", "The change conflicts with stored data or a limit."),
    "PreconditionFailed": ("412", "The If-Match version is not the current one."),
    "PayloadTooLarge": ("413", "The request body is larger than the instance accepts."),
    "UnsupportedMediaType": ("415", "The request body is not application/json."),
    "UnprocessableContent": ("422", "A field is unknown, missing, of the wrong type or invalid."),
    "TooManyRequests": (
        "429",
        "Over `limits.api_key_per_minute` for this credential or `limits.ip_per_minute` for"
        " this address; `Retry-After` gives the seconds to wait.",
    ),
}
READ: Final = ("Unauthorized", "Forbidden")
BODY: Final = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "UnprocessableContent")


def _ref(kind: str, name: str) -> JSONObject:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: JSONObject) -> JSONObject:
    return {"application/json": {"schema": schema}}


def _parameters() -> JSONObject:
    def path(name: str, what: str) -> JSONObject:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": f"The {what}'s id.",
        }

    return {
        "DeviceId": path("device_id", "device"),
        "WebhookId": path("webhook_id", "webhook"),
        "KeyId": path("key_id", "API key"),
        "GrantId": path("grant_id", "linked app"),
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string"},
            "description": "The `next_cursor` of the previous page.",
        },
        "Limit": {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        },
        "IfMatch": {
            "name": "If-Match",
            "in": "header",
            "schema": {"type": "string"},
            "description": 'Only change the device at this version: "5", W/"5" or 5.',
        },
        "ActivitySource": {
            "name": "source",
            "in": "query",
            "schema": {"enum": list(SOURCES)},
        },
        "ActivityDevice": {
            "name": "device_id",
            "in": "query",
            "schema": {"type": "string"},
            "description": "Only this device's activity.",
        },
    }


_ETAG_HEADER: Final = {"ETag": _ref("headers", "ETag")}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    *,
    status: str = "200",
    response: str | None = None,
    response_description: str = "OK",
    parameters: Sequence[str] = (),
    body: str | None = None,
    errors: Sequence[str] = READ,
    headers: JSONObject | None = None,
    public: bool = False,
) -> JSONObject:
    answer: JSONObject = {"description": response_description}
    if response is not None:
        answer["content"] = _json(schema_ref(response))
    if headers:
        answer["headers"] = headers
    responses: JSONObject = {status: answer}
    for name in dict.fromkeys((*errors, "TooManyRequests")):
        responses[ERROR_RESPONSES[name][0]] = _ref("responses", name)
    responses["default"] = _ref("responses", "Problem")
    operation: JSONObject = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = [_ref("parameters", name) for name in parameters]
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(schema_ref(body))}
    if public:
        operation["security"] = []
    return operation


def _paths() -> JSONObject:
    device = ("DeviceId",)
    webhook = ("WebhookId",)
    page = ("Cursor", "Limit")
    return {
        "/devices": {
            "get": _operation(
                "listDevices",
                "List devices",
                "devices",
                response="DeviceList",
                parameters=page,
                errors=(*READ, "BadRequest"),
            ),
            "post": _operation(
                "createDevice",
                "Create a device",
                "devices",
                status="201",
                response="Device",
                response_description="Created",
                body="DeviceCreate",
                errors=(*READ, *BODY, "Conflict", "PaymentRequired"),
                headers={**_ETAG_HEADER, "Location": _ref("headers", "Location")},
            ),
        },
        "/devices/{device_id}": {
            "get": _operation(
                "getDevice",
                "Get a device",
                "devices",
                response="Device",
                parameters=device,
                errors=(*READ, "NotFound"),
                headers=_ETAG_HEADER,
            ),
            "patch": _operation(
                "updateDevice",
                "Rename a device or change its description, room or options",
                "devices",
                response="Device",
                parameters=(*device, "IfMatch"),
                body="DeviceUpdate",
                errors=(*READ, "NotFound", *BODY, "Conflict", "PreconditionFailed"),
                headers=_ETAG_HEADER,
            ),
            "delete": _operation(
                "deleteDevice",
                "Delete a device",
                "devices",
                status="204",
                response_description="Deleted",
                parameters=(*device, "IfMatch"),
                errors=(*READ, "NotFound", "BadRequest", "PreconditionFailed"),
            ),
        },
        "/devices/{device_id}/state": {
            "get": _operation(
                "getDeviceState",
                "Get a device's state",
                "devices",
                response="DeviceState",
                parameters=device,
                errors=(*READ, "NotFound"),
                headers=_ETAG_HEADER,
            ),
            "put": _operation(
                "setDeviceState",
                "Change some of a device's properties",
                "devices",
                response="DeviceState",
                parameters=(*device, "IfMatch"),
                body="StateUpdate",
                errors=(*READ, "NotFound", *BODY, "PreconditionFailed", "PaymentRequired"),
                headers=_ETAG_HEADER,
            ),
        },
        "/devices/{device_id}/press": {
            "post": _operation(
                "pressButton",
                "Press a button",
                "devices",
                response="DeviceState",
                parameters=device,
                errors=(*READ, "NotFound", "UnprocessableContent", "PaymentRequired"),
                headers=_ETAG_HEADER,
            ),
        },
        "/devices/{device_id}/activity": {
            "get": _operation(
                "listDeviceActivity",
                "A device's activity, newest first",
                "activity",
                response="ActivityList",
                parameters=(*device, "ActivitySource", *page),
                errors=(*READ, "NotFound", "BadRequest"),
            ),
        },
        "/activity": {
            "get": _operation(
                "listActivity",
                "The household's activity, newest first",
                "activity",
                response="ActivityList",
                parameters=("ActivityDevice", "ActivitySource", *page),
                errors=(*READ, "BadRequest"),
            ),
        },
        "/webhooks": {
            "get": _operation(
                "listWebhooks",
                "List webhooks",
                "webhooks",
                response="WebhookList",
                parameters=page,
                errors=(*READ, "BadRequest"),
            ),
            "post": _operation(
                "createWebhook",
                "Create a webhook",
                "webhooks",
                status="201",
                response="WebhookCreated",
                response_description="Created; the secret is shown once",
                body="WebhookCreate",
                errors=(*READ, *BODY, "PaymentRequired"),
                headers={"Location": _ref("headers", "Location")},
            ),
        },
        "/webhooks/{webhook_id}": {
            "get": _operation(
                "getWebhook",
                "Get a webhook",
                "webhooks",
                response="Webhook",
                parameters=webhook,
                errors=(*READ, "NotFound"),
            ),
            "patch": _operation(
                "updateWebhook",
                "Change a webhook",
                "webhooks",
                response="Webhook",
                parameters=webhook,
                body="WebhookUpdate",
                errors=(*READ, "NotFound", *BODY),
            ),
            "delete": _operation(
                "deleteWebhook",
                "Delete a webhook",
                "webhooks",
                status="204",
                response_description="Deleted",
                parameters=webhook,
                errors=(*READ, "NotFound"),
            ),
        },
        "/webhooks/{webhook_id}/test": {
            "post": _operation(
                "testWebhook",
                "Queue a webhook.test event",
                "webhooks",
                status="202",
                response="WebhookTestQueued",
                response_description="Queued",
                parameters=webhook,
                errors=(*READ, "NotFound", "UnprocessableContent"),
            ),
        },
        "/webhooks/{webhook_id}/deliveries": {
            "get": _operation(
                "listWebhookDeliveries",
                "A webhook's delivery attempts, newest first",
                "webhooks",
                response="WebhookDeliveryList",
                parameters=(*webhook, *page),
                errors=(*READ, "NotFound", "BadRequest"),
            ),
        },
        "/me": {
            "get": _operation("getMe", "Who the caller is", "account", response="Me"),
        },
        "/keys": {
            "get": _operation(
                "listApiKeys", "The caller's API keys", "account", response="ApiKeyList"
            ),
            "post": _operation(
                "createApiKey",
                "Create an API key",
                "account",
                status="201",
                response="ApiKeyCreated",
                response_description="Created; the key is shown once",
                body="ApiKeyCreate",
                errors=(*READ, *BODY),
            ),
        },
        "/keys/{key_id}": {
            "delete": _operation(
                "revokeApiKey",
                "Revoke an API key",
                "account",
                status="204",
                response_description="Revoked",
                parameters=("KeyId",),
                errors=(*READ, "NotFound"),
            ),
        },
        "/grants": {
            "get": _operation(
                "listGrants",
                "The apps (Alexa, IFTTT, ...) the caller's user has linked",
                "account",
                response="GrantList",
            ),
        },
        "/grants/{grant_id}": {
            "delete": _operation(
                "revokeGrant",
                "Unlink an app: all its tokens stop working at once",
                "account",
                status="204",
                response_description="Unlinked",
                parameters=("GrantId",),
                errors=(*READ, "NotFound"),
            ),
        },
        "/integrations/alexa": {
            "get": _operation(
                "getAlexaIntegration",
                "The caller's Alexa link: region, token health, last ChangeReport",
                "integrations",
                response="AlexaIntegration",
            ),
        },
        "/billing": {
            "get": _operation(
                "getBilling",
                "Hosted instances: the household's plan, status, limits and this month's usage",
                "billing",
                response="Billing",
                errors=(*READ, "NotFound"),
            ),
        },
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This document",
                "meta",
                response_description="The OpenAPI document",
                errors=(),
                public=True,
            ),
        },
    }


def build_document() -> JSONObject:
    """The whole OpenAPI 3.1 document."""
    problem = {"application/problem+json": {"schema": schema_ref("Problem")}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StateRelay API",
            "version": API_VERSION,
            "description": "Virtual smart-home devices: state, activity, webhooks and keys. "
            "Errors are RFC 9457 problem details with a stable `code`.",
        },
        "servers": [{"url": "/", "description": "The host serving this document"}],
        "security": [{"bearer": []}],
        "paths": {PREFIX + path: item for path, item in _paths().items()},
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (sr_...) or an OAuth access token. A key created"
                    " with `device_ids` reaches only those devices.",
                }
            },
            "schemas": {**component_schemas(), **integrations.SCHEMAS, **billing.SCHEMAS},
            "parameters": _parameters(),
            "headers": {
                "ETag": {
                    "description": 'The device version as an entity tag, e.g. "5".',
                    "schema": {"type": "string"},
                },
                "Location": {
                    "description": "The path of the new resource.",
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "Whole seconds until the request may be sent again.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
            "responses": {
                "Problem": {"description": "An error", "content": problem},
                **{
                    name: {"description": description, "content": problem}
                    for name, (_status, description) in ERROR_RESPONSES.items()
                },
                "TooManyRequests": {
                    "description": ERROR_RESPONSES["TooManyRequests"][1],
                    "content": problem,
                    "headers": {"Retry-After": _ref("headers", "RetryAfter")},
                },
            },
        },
    }


def document_bytes() -> bytes:
    """The document serialized once, for serving."""
    return json.dumps(build_document(), indent=2).encode()


@routes.get("/openapi.json", name="openapi", allow_head=False)
async def openapi_document(request: web.Request) -> web.Response:
    """Serve the OpenAPI document (no authentication)."""
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")
