"""Identifiers and opaque list cursors."""

from __future__ import annotations

import base64
import binascii
import secrets

from staterelay.core.errors import BadRequest

ENDPOINT_ID_MAX = 64


def new_id(prefix: str) -> str:
    """A random id like ``dev_3kTMd0yxqKp9N2aB``: URL-safe and a valid Alexa endpointId."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def encode_cursor(kind: str, position: int) -> str:
    """An opaque cursor for the position after which the next page starts."""
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> int | None:
    """The position in a cursor made by ``encode_cursor``; ``BadRequest`` when it is not one."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        found_kind, _, number = text.partition(":")
        position = int(number)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadRequest("cursor is not valid", field="cursor") from None
    if found_kind != kind or position < 0:
        raise BadRequest("cursor is not valid for this list", field="cursor")
    return position


def parse_limit(value: object, *, default: int = 50, maximum: int = 200) -> int:
    """A page size from a query parameter."""
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise BadRequest("limit must be a whole number", field="limit") from None
    if not 1 <= number <= maximum:
        raise BadRequest(f"limit must be from 1 to {maximum}", field="limit")
    return number
