"""Query and header parameters: list paging and ``If-Match`` versions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from staterelay.core.errors import BadRequest
from staterelay.core.ids import parse_limit

# A device's entity tag is its version: "5", W/"5" (weak is accepted, the version is exact
# anyway) or a bare 5 from clients that do not quote.
_ENTITY_TAG: Final = re.compile(r'(?:W/)?"(\d{1,15})"|(\d{1,15})')


@dataclass(frozen=True, slots=True)
class PageParams:
    """The ``cursor`` and ``limit`` of a list request."""

    cursor: str | None
    limit: int


def page_params(request: web.Request) -> PageParams:
    """Paging parameters from the query string; ``BadRequest`` for a bad limit."""
    cursor = request.query.get("cursor") or None
    return PageParams(cursor=cursor, limit=parse_limit(request.query.get("limit")))


def if_match_version(request: web.Request) -> int | None:
    """The version an ``If-Match`` header requires; None when absent or ``*``."""
    values = request.headers.getall("If-Match", [])
    if not values:
        return None
    raw = ",".join(values).strip()
    if raw == "*":
        return None
    match = _ENTITY_TAG.fullmatch(raw)
    if match is None:
        raise BadRequest(
            'If-Match must be one device version, such as "5" (from the ETag header)',
            field="If-Match",
        )
    return int(match.group(1) or match.group(2))
