"""JSON request bodies: media type, size cap, strict parsing and per-field type checks.

Parsing follows I-JSON (RFC 7493): UTF-8 only, no duplicate member names, no NaN or
Infinity, integers within the exactly representable range and no lone surrogates, so
nothing the store or a sink cannot encode gets past the API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web

from staterelay.api.problems import PayloadTooLarge, UnsupportedMediaType
from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.core.errors import BadRequest, InvalidInput, UnknownField
from staterelay.jsoncodec import MAX_DEPTH, TooDeep, check_depth

JSON_MEDIA_TYPE: Final = "application/json"
MAX_SAFE_INTEGER: Final = 2**53 - 1

JSONKind = Literal["string", "integer", "number", "boolean", "object", "array", "null"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one member of a request object may hold."""

    kinds: tuple[JSONKind, ...]
    required: bool = False
    items: JSONKind | None = None


BodySpec = Mapping[str, FieldSpec]


class _InvalidJSON(ValueError):
    """The text is JSON but breaks an I-JSON rule."""


async def read_body(request: web.Request, *, max_bytes: int) -> bytes:
    """The raw body, refusing with 413 as soon as it exceeds ``max_bytes``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the request body must be at most {max_bytes} bytes")
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the request body must be at most {max_bytes} bytes")
    return bytes(body)


async def read_json_object(request: web.Request, *, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; 415, 413 or 400 when it is not one."""
    if request.content_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"the request body must be {JSON_MEDIA_TYPE}")
    charset = request.charset
    if charset is not None and charset.lower().replace("-", "") != "utf8":
        raise UnsupportedMediaType("a JSON body must be encoded as UTF-8")
    raw = await read_body(request, max_bytes=max_bytes)
    if not raw:
        raise BadRequest("the request needs a JSON object body")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value


def parse_json(raw: bytes) -> Any:
    """Parse a JSON text under the I-JSON rules; ``BadRequest`` for anything else."""
    try:
        check_depth(raw)
    except TooDeep:
        raise BadRequest(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_safe_int,
            parse_float=_finite_float,
        )
    except _InvalidJSON as exc:
        raise BadRequest(f"the request body is not acceptable JSON: {exc}") from None
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    _check_tree(value)
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _InvalidJSON(f"member {key!r} appears twice")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise _InvalidJSON(f"{name} is not a JSON number")


def _safe_int(text: str) -> int:
    number = int(text)
    if abs(number) > MAX_SAFE_INTEGER:
        raise _InvalidJSON(f"integers must be within +/-{MAX_SAFE_INTEGER}")
    return number


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _InvalidJSON("a number is too large")
    return number


def _check_tree(value: Any) -> None:
    """Refuse strings that are not valid Unicode (lone surrogates), keys included.

    ``check_depth`` has bounded the nesting before parsing, so the walk is short.
    """
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the request body holds a string that is not valid Unicode") from None


_ARTICLE: Final[dict[JSONKind, str]] = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def json_kind(value: Any) -> JSONKind:
    """The JSON type name of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _matches(value: Any, kinds: tuple[JSONKind, ...]) -> bool:
    kind = json_kind(value)
    return kind in kinds or (kind == "integer" and "number" in kinds)


def _describe(kinds: tuple[JSONKind, ...], items: JSONKind | None) -> str:
    names = [
        f"an array of {items}s" if kind == "array" and items else _ARTICLE[kind] for kind in kinds
    ]
    return " or ".join(names)


def check_fields(body: Mapping[str, Any], spec: BodySpec) -> dict[str, Any]:
    """Refuse unknown members, missing required ones and values of the wrong JSON type."""
    for name in body:
        if name not in spec:
            allowed = ", ".join(spec)
            raise UnknownField(
                f"unknown field {name!r}; this request accepts {allowed}", field=name
            )
    for name, field_spec in spec.items():
        if name not in body:
            if field_spec.required:
                raise InvalidInput(f"{name} is required", field=name)
            continue
        value = body[name]
        if not _matches(value, field_spec.kinds) or (
            field_spec.items is not None
            and isinstance(value, list)
            and not all(_matches(item, (field_spec.items,)) for item in value)
        ):
            raise InvalidInput(
                f"{name} must be {_describe(field_spec.kinds, field_spec.items)}", field=name
            )
    return dict(body)


async def read_fields(request: web.Request, spec: BodySpec) -> dict[str, Any]:
    """The request's JSON object body, checked against ``spec``."""
    max_bytes = request.app[SETTINGS_KEY].server.max_body_bytes
    return check_fields(await read_json_object(request, max_bytes=max_bytes), spec)
