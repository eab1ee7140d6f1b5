"""Successful responses: JSON with the headers the API promises (``ETag``, ``Location``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from staterelay.jsoncodec import encode_text

JSON_TYPE = "application/json; charset=utf-8"  # what ``web.json_response`` says


def etag(version: int) -> str:
    """The strong entity tag of a device version."""
    return f'"{version}"'


def json_response(
    data: Any,
    *,
    status: int = 200,
    version: int | None = None,
    location: str | None = None,
) -> web.Response:
    """A JSON response, with ``ETag`` for a versioned resource and ``Location`` for a new one."""
    headers: dict[str, str] = {}
    if version is not None:
        headers["ETag"] = etag(version)
    if location is not None:
        headers["Location"] = location
    return web.json_response(data, status=status, headers=headers, dumps=encode_text)


def json_body_response(body: bytes, *, version: int) -> web.Response:
    """200 with JSON already encoded, and the ``ETag`` of its version."""
    return web.Response(body=body, headers={"Content-Type": JSON_TYPE, "ETag": etag(version)})


def no_content() -> web.Response:
    """204 with no body."""
    return web.Response(status=204)
