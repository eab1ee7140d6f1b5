"""Slow and vanished clients: a stalled body gets 408 and a closed connection; a client that
hangs up mid-body is one INFO line, never a traceback (issue 15).

The 408s are checked in-process on a real loopback server, one surface at a time, with raw
sockets (an HTTP client library would not stall on purpose). Hang-ups are checked against a
``staterelay serve`` process, because aiohttp's test server cancels handlers on disconnect,
which the real server does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from staterelay.core import Core
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.integrations.alexa.views import SECRET_HEADER
from staterelay.settings import IftttSettings, ServerSettings, Settings
from tests.ifttt.conftest import SERVICE_KEY, link
from tests.processes import LoggedServerProcess, run_cli

BODY_TIMEOUT = 0.5
DECLARED = 200  # Content-Length announced; fewer bytes are ever sent


@dataclass
class RawAnswer:
    """An HTTP answer read off a socket."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


async def stalled_post(
    port: int, path: str, headers: dict[str, str], *, part: bytes = b'{"a":'
) -> RawAnswer:
    """POST with a Content-Length of ``DECLARED``, send ``part`` of the body and stall."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"POST {path} HTTP/1.1", "Host: localhost", f"Content-Length: {DECLARED}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + part)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        answer_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(answer_headers.get("content-length", "0")))
        # The server closes: the rest of the stalled body is not waited for.
        rest = await asyncio.wait_for(reader.read(), 10)
        return RawAnswer(int(status_line.split()[1]), answer_headers, body, rest == b"")
    finally:
        writer.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A half-second body deadline; IFTTT on, so its routes can be reached."""
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(ServerSettings(), body_timeout_seconds=BODY_TIMEOUT),
        ifttt=IftttSettings(service_key=SERVICE_KEY),
    )


@pytest.fixture(autouse=True)
def no_error_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing in these tests is the server's fault: no ERROR record, no traceback."""
    caplog.set_level(logging.INFO)
    yield
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


@pytest.fixture
async def credentials(core: Core) -> dict[str, str]:
    """An API key and an IFTTT user token of one linked user."""
    linked = await link(core, "slow@example.com")
    return {"api": linked.api_key, "ifttt": linked.token}


JSON = {"Content-Type": "application/json"}


async def test_stalled_api_body_is_a_problem_408_and_the_connection_closes(
    client: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    headers = {**JSON, "Authorization": f"Bearer {credentials['api']}"}
    answer = await stalled_post(client.port, "/api/v1/devices", headers)
    assert answer.status == 408
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "request_timeout"
    assert "0.5 seconds" in answer.json()["detail"]
    assert answer.closed


async def test_stalled_directive_is_an_alexa_error_408(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    secret = relay_secret(load_or_create_secret(settings.secret_key_path))
    answer = await stalled_post(client.port, "/alexa/smart_home", {**JSON, SECRET_HEADER: secret})
    assert answer.status == 408
    payload = answer.json()["event"]["payload"]
    assert payload["type"] == "INVALID_DIRECTIVE"
    assert "did not arrive" in payload["message"]
    assert answer.closed


async def test_stalled_ifttt_action_is_an_ifttt_error_408(
    client: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    headers = {**JSON, "Authorization": f"Bearer {credentials['ifttt']}"}
    answer = await stalled_post(client.port, "/ifttt/v1/actions/set_power", headers)
    assert answer.status == 408
    assert "did not arrive" in answer.json()["errors"][0]["message"]
    assert answer.closed


async def test_stalled_token_request_is_oauth_error_json_408(
    client: TestClient[Any, Any],
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await stalled_post(client.port, "/oauth/token", form, part=b"grant_type=")
    assert answer.status == 408
    assert answer.json()["error"] == "request_timeout"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.closed


async def test_stalled_form_is_an_html_408_page(client: TestClient[Any, Any]) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await stalled_post(client.port, "/login", form, part=b"email=")
    assert answer.status == 408
    assert answer.headers["content-type"].startswith("text/html")
    assert b"Request timeout" in answer.body
    assert answer.closed


async def test_a_body_that_arrives_in_pieces_within_the_deadline_is_served(
    client: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    """Slow is fine while the whole body arrives in time; the connection stays usable."""
    body = json.dumps({"type": "switch", "name": "Trickled"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        head = (
            "POST /api/v1/devices HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {credentials['api']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body[:10])
        await writer.drain()
        await asyncio.sleep(BODY_TIMEOUT / 5)
        writer.write(body[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.split()[1] == b"201"
        while (line := await reader.readline()) not in (b"\r\n", b""):
            assert not line.lower().startswith(b"connection: close")
    finally:
        writer.close()


# --- hang-ups, against a real server process ----------------------------------------------------


@pytest.mark.slow
async def test_clients_that_hang_up_mid_body_are_one_info_line_each(tmp_path: Path) -> None:
    """Every surface: no ERROR, no traceback; one INFO line per hang-up; the server serves on."""
    data_dir = tmp_path / "data"
    run_cli(data_dir, "user", "create", "--email", "gone@example.com")
    key = run_cli(data_dir, "apikey", "create", "--email", "gone@example.com", "--scope", "write")
    server = LoggedServerProcess(
        data_dir,
        tmp_path / "serve.log",
        env={"STATERELAY_IFTTT_SERVICE_KEY": SERVICE_KEY, "STATERELAY_LOG_FORMAT": "text"},
    )
    secret = relay_secret(load_or_create_secret(data_dir / "secret.key"))
    targets = [
        ("/api/v1/devices", {**JSON, "Authorization": f"Bearer {key}"}),
        ("/alexa/smart_home", {**JSON, SECRET_HEADER: secret}),
        ("/ifttt/v1/actions/set_power", {**JSON, "Authorization": f"Bearer {key}"}),
        ("/login", {"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    try:
        await server.start()
        for path, headers in targets:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            head = [f"POST {path} HTTP/1.1", "Host: localhost", f"Content-Length: {DECLARED}"]
            head += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"a":')
            await writer.drain()
            await asyncio.sleep(0.2)  # the handler is now waiting for the rest
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.5)
        await server.wait_ready(10)
    finally:
        server.ensure_stopped()
    log = server.log_text()
    assert "Traceback" not in log, log
    assert " ERROR " not in log, log
    gone = [line for line in log.splitlines() if "client went away" in line]
    # IFTTT refuses the API key (not an IFTTT token) before reading: three hang-ups are read.
    assert len(gone) >= 3, log
    assert all("INFO" in line for line in gone), gone
