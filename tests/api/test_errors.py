"""Error answers: every failure is problem+json with a stable code, and nothing leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from staterelay.core import Core
from tests.api.conftest import API, Client, assert_problem, create_device
from tests.conftest import Account

JSON = {"Content-Type": "application/json"}


async def _post_raw(
    client: Client, account: Account, body: bytes, headers: dict[str, str] | None = None
) -> Any:
    return await client.post(
        f"{API}/devices", data=body, headers={**account.headers, **(headers or JSON)}
    )


@pytest.mark.parametrize(
    ("body", "detail_part"),
    [
        (b'{"type": "switch", "name": ', "not valid JSON"),
        (b"{'type': 'switch'}", "not valid JSON"),
        (b"", "needs a JSON object"),
        (b'[{"type": "switch", "name": "Lamp"}]', "must be a JSON object"),
        (b'"switch"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"type": "switch", "name": "Lamp", "name": "Other"}', "appears twice"),
        (b'{"type": "switch", "name": NaN}', "NaN"),
        (b'{"type": "switch", "name": -Infinity}', "Infinity"),
        (b'{"type": "switch", "name": 1e400}', "too large"),
        (b'{"type": "switch", "name": 9007199254740993}', "integers"),
        (b'{"type": "switch", "name": "\\ud800"}', "not valid Unicode"),
        (b'{"type": "switch", "name": "\xff"}', "not valid UTF-8"),
        (b'{"options": ' + b"[" * 40 + b"]" * 40 + b"}", "nests deeper"),
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
        (b"[" * 60000, "nests deeper"),
        (b"[1, 2", "not valid JSON"),
    ],
)
async def test_unparseable_bodies_are_400(
    client: Client, account: Account, body: bytes, detail_part: str
) -> None:
    """Malformed JSON, non-object bodies and JSON that breaks I-JSON rules are 400."""
    response = await _post_raw(client, account, body)
    problem = await assert_problem(response, 400, "bad_request")
    assert detail_part in problem["detail"]
    listed = await client.get(f"{API}/devices", headers=account.headers)
    assert (await listed.json())["items"] == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json-patch+json",
        "application/json; charset=latin-1",
        None,
    ],
)
async def test_wrong_content_type_is_415(
    client: Client, account: Account, content_type: str | None
) -> None:
    """A JSON body sent under another media type or charset is refused."""
    body = json.dumps({"type": "switch", "name": "Lamp"}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(
        f"{API}/devices", data=body, headers={**account.headers, **headers}
    )
    if content_type is None:
        # aiohttp labels bytes without a type as application/octet-stream.
        assert response.request_info.headers.get("Content-Type") in (
            None,
            "application/octet-stream",
        )
    await assert_problem(response, 415, "unsupported_media_type")


async def test_json_with_utf8_charset_is_accepted(client: Client, account: Account) -> None:
    """``application/json; charset=utf-8`` is JSON."""
    body = json.dumps({"type": "switch", "name": "Läмp"}).encode()
    response = await _post_raw(
        client, account, body, {"Content-Type": "application/json; charset=UTF-8"}
    )
    assert response.status == 201
    assert (await response.json())["name"] == "Läмp"


async def test_body_over_the_limit_is_413(client: Client, account: Account) -> None:
    """A 70 KiB body is refused with a problem, whether its length is declared or streamed."""
    body = json.dumps({"type": "switch", "name": "x" * 70 * 1024}).encode()
    declared = await _post_raw(client, account, body)
    await assert_problem(declared, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    streamed = await client.post(
        f"{API}/devices", data=chunks(), headers={**account.headers, **JSON}
    )
    assert streamed.request_info.headers.get("Transfer-Encoding") == "chunked"
    await assert_problem(streamed, 413, "payload_too_large")
    state_body = json.dumps({"power": "ON", "pad": "x" * 70 * 1024}).encode()
    device = await create_device(client, account)
    too_big_state = await client.put(
        f"{API}/devices/{device['id']}/state",
        data=state_body,
        headers={**account.headers, **JSON},
    )
    await assert_problem(too_big_state, 413, "payload_too_large")


async def test_body_just_under_the_limit_is_parsed(client: Client, account: Account) -> None:
    """A body within the limit reaches validation (a long name is 422, not 413)."""
    body = json.dumps({"type": "switch", "name": "x" * 60 * 1024}).encode()
    response = await _post_raw(client, account, body)
    await assert_problem(response, 422, "invalid_value", field="name")


@pytest.mark.parametrize(
    ("path_kind", "body", "field"),
    [
        ("devices", {"type": "switch", "name": "Lamp", "colour": "red"}, "colour"),
        ("device", {"name": "Lamp", "Type": "dimmer"}, "Type"),
        ("webhooks", {"url": "http://127.0.0.1:9/", "secret": "mine"}, "secret"),
        ("keys", {"name": "k", "scope": "read", "expires": 3}, "expires"),
    ],
)
async def test_unknown_field_is_422_naming_it(
    client: Client, account: Account, path_kind: str, body: dict[str, Any], field: str
) -> None:
    """An unknown member is named in ``field`` and in ``detail``."""
    device = await create_device(client, account)
    method, path = {
        "devices": ("POST", "/devices"),
        "device": ("PATCH", f"/devices/{device['id']}"),
        "webhooks": ("POST", "/webhooks"),
        "keys": ("POST", "/keys"),
    }[path_kind]
    response = await client.request(method, f"{API}{path}", json=body, headers=account.headers)
    problem = await assert_problem(response, 422, "unknown_field", field=field)
    assert repr(field) in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"type": "switch", "name": 5}, "name", "name must be a string"),
        ({"type": ["switch"], "name": "Lamp"}, "type", "type must be a string"),
        ({"type": "switch", "name": "Lamp", "description": 3.5}, "description", "string or null"),
        ({"type": "switch", "name": "Lamp", "options": [1]}, "options", "an object or null"),
        ({"type": "switch", "name": None}, "name", "name must be a string"),
        ({"name": "Lamp"}, "type", "type is required"),
    ],
)
async def test_wrong_types_are_422(
    client: Client, account: Account, body: dict[str, Any], field: str, detail: str
) -> None:
    """A member of the wrong JSON type, or a missing one, is 422 naming it."""
    response = await client.post(f"{API}/devices", json=body, headers=account.headers)
    problem = await assert_problem(response, 422, "invalid_value", field=field)
    assert detail in problem["detail"]


async def test_patch_wrong_type_changes_nothing(client: Client, account: Account) -> None:
    """A PATCH with one bad member applies none of the others."""
    device = await create_device(client, account)
    response = await client.patch(
        f"{API}/devices/{device['id']}",
        json={"description": "new", "name": False},
        headers=account.headers,
    )
    await assert_problem(response, 422, "invalid_value", field="name")
    after = await client.get(f"{API}/devices/{device['id']}", headers=account.headers)
    assert await after.json() == device


async def test_unknown_path_and_method_are_problems(client: Client, account: Account) -> None:
    """aiohttp's own 404 and 405 inside the API come back as problems, with ``Allow``."""
    missing = await client.get(f"{API}/gadgets", headers=account.headers)
    await assert_problem(missing, 404, "not_found")
    anonymous = await client.get(f"{API}/gadgets")
    await assert_problem(anonymous, 404, "not_found")
    wrong = await client.put(f"{API}/devices", json={}, headers=account.headers)
    await assert_problem(wrong, 405, "method_not_allowed")
    assert set(wrong.headers["Allow"].split(",")) == {"GET", "POST"}


async def test_unexpected_error_is_logged_and_hidden(
    client: Client,
    account: Account,
    core: Core,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A crash is a 500 problem with no exception text; the traceback goes to the log."""

    async def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(core.devices, "list", explode)
    with caplog.at_level(logging.ERROR, logger="staterelay.api"):
        response = await client.get(f"{API}/devices", headers=account.headers)
    problem = await assert_problem(response, 500, "internal_error")
    assert "hunter2" not in json.dumps(problem)
    assert "RuntimeError" not in await response.text()
    records = [r for r in caplog.records if r.name == "staterelay.api.app"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "hunter2" in str(records[0].exc_info[1])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"temperature": 1' + b"0" * 309 + b"}",
        b'{"temperature": {"value": -1' + b"0" * 400 + b', "scale": "CELSIUS"}}',
        b'{"temperature": 1e999}',
    ],
)
async def test_numbers_beyond_a_double_never_reach_core(
    client: Client, account: Account, raw: bytes
) -> None:
    """A reading no double can hold is refused while parsing (core would overflow on it)."""
    sensor = await create_device(client, account, type="temperature_sensor", name="Attic")
    response = await client.put(
        f"{API}/devices/{sensor['id']}/state", data=raw, headers={**account.headers, **JSON}
    )
    await assert_problem(response, 400, "bad_request")
    after = await client.get(f"{API}/devices/{sensor['id']}", headers=account.headers)
    assert await after.json() == sensor
