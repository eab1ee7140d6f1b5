"""Helpers for API tests: typed client alias, device creation, problem and schema assertions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from staterelay.api.openapi import build_document
from tests.conftest import Account

Client = TestClient[web.Request, web.Application]
API = "/api/v1"
DOCUMENT_URI = "urn:staterelay:openapi"


async def create_device(
    client: Client, account: Account, type: str = "switch", name: str = "Lamp", **extra: Any
) -> dict[str, Any]:
    """Create a device through the API and return its JSON."""
    response = await client.post(
        f"{API}/devices", json={"type": type, "name": name, **extra}, headers=account.headers
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def create_webhook(client: Client, account: Account, url: str) -> dict[str, Any]:
    """Create a webhook through the API and return its JSON (with the secret)."""
    response = await client.post(f"{API}/webhooks", json={"url": url}, headers=account.headers)
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def assert_problem(
    response: ClientResponse, status: int, code: str, *, field: str | None = None
) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and code (and field); return it."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/problem+json"
    assert "Traceback" not in text
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://staterelay.dev/problems/{code}"
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body.get("field") == field
    assert_schema("Problem", body)
    return body


_DOCUMENT = build_document()
_REGISTRY: Registry[Any] = Registry().with_resource(
    DOCUMENT_URI, Resource.from_contents(_DOCUMENT, default_specification=DRAFT202012)
)


def assert_schema(name: str, instance: Any) -> None:
    """Validate a JSON value against a schema of the OpenAPI document's components."""
    validator = Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}, registry=_REGISTRY
    )
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(e.message for e in errors)


def api_app(app: web.Application) -> web.Application:
    """The API sub-application mounted in the whole app."""
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource) and resource.canonical == API:
            sub: web.Application = resource.get_info()["app"]
            return sub
    raise AssertionError("the API sub-application is not mounted")


def api_routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path template) the mounted API routes."""
    return sorted(
        (route.method, route.resource.canonical)
        for route in api_app(app).router.routes()
        if route.resource is not None
    )


def fill(template: str, **ids: str) -> str:
    """A concrete path from a route template."""
    return template.format(**ids)


def placeholders(template: str) -> set[str]:
    """The path parameters a route template names."""
    return set(re.findall(r"{(\w+)}", template))


@pytest.fixture
def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    return build_document()
