"""The OpenAPI document: complete against the router, internally consistent, served as built."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator

from staterelay.api.openapi import build_document
from tests.api.conftest import API, Client, api_routes, placeholders

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_every_route_is_documented_and_every_operation_routed(
    client: Client, app: web.Application, document: dict[str, Any]
) -> None:
    """The router and the document name exactly the same (method, path) pairs."""
    routed = set(api_routes(app))
    documented = set(_operations(document))
    assert routed - documented == set(), "routes missing from the document"
    assert documented - routed == set(), "documented operations with no route"
    assert len(routed) == 26


def test_references_resolve_and_schemas_are_valid(document: dict[str, Any]) -> None:
    """Every $ref points at something, and every component schema is valid JSON Schema."""
    refs = _refs(document)
    assert len(refs) > 50
    for ref in refs:
        assert _resolve(document, ref) is not None
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the fault
        assert schema.get("type") or "allOf" in schema, name
    used = {ref.rsplit("/", 1)[1] for ref in refs}
    unused = set(document["components"]["schemas"]) - used
    assert unused == set()


def test_operations_are_complete(document: dict[str, Any]) -> None:
    """Unique operation ids, declared path parameters, auth errors on every protected one."""
    operations = _operations(document)
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert document["security"] == [{"bearer": []}]
    for (method, path), operation in operations.items():
        assert path.startswith(f"{API}/")
        parameters = [_resolve(document, p["$ref"]) for p in operation.get("parameters", [])]
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert declared == placeholders(path), (method, path)
        assert "default" in operation["responses"]
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert len(success) == 1, (method, path)
        if operation.get("security") == []:
            assert (method, path) == ("GET", f"{API}/openapi.json")
        else:
            assert "401" in operation["responses"], (method, path)
            assert "403" in operation["responses"], (method, path)
        if "requestBody" in operation:
            for code in ("400", "413", "415", "422"):
                assert code in operation["responses"], (method, path, code)
        if "{" in path:
            assert "404" in operation["responses"], (method, path)


async def test_served_document_is_the_built_one(client: Client) -> None:
    """``/api/v1/openapi.json`` serves the document as JSON without authentication."""
    response = await client.get(f"{API}/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == build_document()


def test_state_update_schema_covers_every_settable_property(document: dict[str, Any]) -> None:
    """The state schema knows each property a non-momentary device type has, with a schema."""
    from staterelay.core.device_types import DEVICE_TYPES

    expected = {
        spec.name
        for kind in DEVICE_TYPES.values()
        if not kind.momentary
        for spec in kind.properties
    }
    properties = document["components"]["schemas"]["StateUpdate"]["properties"]
    assert set(properties) == expected
    assert all(properties[name] for name in expected)
