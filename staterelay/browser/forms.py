"""Reading HTML form posts as plain text fields."""

from __future__ import annotations

from aiohttp import web


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields (the first value of each; file parts are ignored)."""
    data = await request.post()
    fields: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, str) and name not in fields:
            fields[name] = value
    return fields
