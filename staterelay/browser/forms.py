"""HTML form posts: reading them as plain text fields, and a refusal next to its field."""

from __future__ import annotations

from aiohttp import web

from staterelay.core.errors import Conflict, InvalidInput


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields (the first value of each; file parts are ignored)."""
    data = await request.post()
    fields: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, str) and name not in fields:
            fields[name] = value
    return fields


def field_errors(error: InvalidInput | Conflict) -> dict[str, str]:
    """A domain error as a sentence next to its form field (``form`` when it names none)."""
    detail = error.detail[:1].upper() + error.detail[1:]
    return {error.field or "form": detail if detail.endswith(".") else detail + "."}
