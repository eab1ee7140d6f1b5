"""security.md section 10, OAuth items 1-13: one named test (or parametrized family) each."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.settings import Settings
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_SECRET,
    ALEXA_URI,
    ALEXA_URIS,
    IFTTT_ID,
    IFTTT_SECRET,
    IFTTT_URI,
    Client,
    Clock,
    authorize_path,
    consent,
    form_action,
    form_value,
    get_code,
    redirect_params,
    sign_in,
)

VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghijklmnop"
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")
)


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An HTTP Basic client authentication header (RFC 6749 2.3.1 form-encodes both parts)."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


ALEXA_AUTH = basic(ALEXA_ID, ALEXA_SECRET)
IFTTT_BODY = {"client_id": IFTTT_ID, "client_secret": IFTTT_SECRET}


async def post_form(
    browser: Client,
    path: str,
    data: dict[str, str] | list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], Any]:
    """POST a form; returns status, JSON body and headers."""
    response = await browser.post(path, data=data, headers=headers or {})
    return response.status, await response.json(), response.headers


async def exchange(
    browser: Client, code: str, *, redirect_uri: str = ALEXA_URI, **extra: str
) -> tuple[int, dict[str, Any], Any]:
    """Alexa's token request for a code (HTTP Basic)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return await post_form(browser, "/oauth/token", {**data, **extra}, ALEXA_AUTH)


async def refresh(
    browser: Client, refresh_token: str, *, auth: str = "alexa"
) -> tuple[int, dict[str, Any], Any]:
    """A refresh request as Alexa (Basic) or IFTTT (body) makes it."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if auth == "alexa":
        return await post_form(browser, "/oauth/token", data, ALEXA_AUTH)
    return await post_form(browser, "/oauth/token", {**data, **IFTTT_BODY})


async def api_status(browser: Client, access_token: str) -> int:
    """The status of ``GET /api/v1/me`` with this bearer token."""
    response = await browser.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})
    return response.status


async def alexa_tokens(browser: Client) -> dict[str, Any]:
    """A fresh Alexa link's token response (the browser must be signed in)."""
    status, body, _ = await exchange(browser, await get_code(browser))
    assert status == 200, body
    return body


async def ifttt_tokens(browser: Client) -> dict[str, Any]:
    """A fresh IFTTT link's token response (the browser must be signed in)."""
    location = await consent(browser, authorize_path(IFTTT_ID, IFTTT_URI, scope="ifttt"))
    data = {
        "grant_type": "authorization_code",
        "code": redirect_params(location)["code"],
        "redirect_uri": IFTTT_URI,
        **IFTTT_BODY,
    }
    status, body, _ = await post_form(browser, "/oauth/token", data)
    assert status == 200, body
    return body


@pytest.fixture
async def signed_in(browser: Client, server: TestServer, user: Any) -> Client:
    """The browser, signed in as the user."""
    await sign_in(browser)
    return browser


# 1 -------------------------------------------------------------------------------------------
async def test_checklist_01_reused_code_fails_and_revokes_its_tokens(signed_in: Client) -> None:
    code = await get_code(signed_in)
    status, first, _ = await exchange(signed_in, code)
    assert status == 200
    assert await api_status(signed_in, first["access_token"]) == 200
    status, second, _ = await exchange(signed_in, code)
    assert (status, second["error"]) == (400, "invalid_grant")
    assert "access_token" not in second
    assert await api_status(signed_in, first["access_token"]) == 401
    status, body, _ = await refresh(signed_in, first["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


# 2 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("elapsed", "status"), [(299, 200), (300, 400)])
async def test_checklist_02_code_older_than_its_ttl_is_invalid_grant(
    signed_in: Client, clock: Clock, elapsed: int, status: int
) -> None:
    code = await get_code(signed_in)
    clock.now += elapsed
    answer, body, _ = await exchange(signed_in, code)
    assert answer == status, body
    if status == 400:
        assert body["error"] == "invalid_grant"


# 3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "redirect_uri",
    [
        ALEXA_URI + "/",
        ALEXA_URI.replace("pitangui", "PITANGUI"),
        ALEXA_URI.lower(),
        ALEXA_URI + "?extra=1",
        ALEXA_URI.replace("amazon.com", "amazon.com:8443"),
        "https://evil.example/api/skill/link/M2ABCDEF",
    ],
    ids=["trailing-slash", "host-case", "path-case", "extra-query", "port", "other-host"],
)
@pytest.mark.parametrize("signed", [False, True], ids=["signed-out", "signed-in"])
async def test_checklist_03_unregistered_redirect_uri_gets_an_error_page(
    browser: Client, server: TestServer, user: Any, redirect_uri: str, signed: bool
) -> None:
    if signed:
        await sign_in(browser)
    response = await browser.get(authorize_path(redirect_uri=redirect_uri), allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers
    assert response.content_type == "text/html"
    assert "invalid_request" in await response.text()


async def test_checklist_03_unknown_client_gets_an_error_page(
    browser: Client, server: TestServer
) -> None:
    response = await browser.get(authorize_path(client_id="nobody"), allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers
    assert "invalid_client" in await response.text()


async def test_checklist_03_token_redirect_uri_must_repeat_the_authorization_one(
    signed_in: Client,
) -> None:
    code = await get_code(signed_in)
    status, body, _ = await exchange(signed_in, code, redirect_uri=ALEXA_URIS[1])
    assert (status, body["error"]) == (400, "invalid_grant")


# 4 -------------------------------------------------------------------------------------------
async def test_checklist_04_pkce_s256_is_enforced_when_a_challenge_was_sent(
    signed_in: Client,
) -> None:
    pkce = {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    wrong = await exchange(
        signed_in, await get_code(signed_in, authorize_path(**pkce)), code_verifier="w" * 50
    )
    assert (wrong[0], wrong[1]["error"]) == (400, "invalid_grant")
    missing = await exchange(signed_in, await get_code(signed_in, authorize_path(**pkce)))
    assert (missing[0], missing[1]["error"]) == (400, "invalid_request")
    right = await exchange(
        signed_in, await get_code(signed_in, authorize_path(**pkce)), code_verifier=VERIFIER
    )
    assert right[0] == 200, right[1]


async def test_checklist_04_verifier_without_a_challenge_is_refused(signed_in: Client) -> None:
    status, body, _ = await exchange(signed_in, await get_code(signed_in), code_verifier=VERIFIER)
    assert (status, body["error"]) == (400, "invalid_request")


async def test_checklist_04_plain_challenge_method_is_refused(signed_in: Client) -> None:
    path = authorize_path(code_challenge=VERIFIER, code_challenge_method="plain")
    response = await signed_in.get(path, allow_redirects=False)
    assert response.status == 302
    params = redirect_params(response.headers["Location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-123"
    assert "code" not in params


# 5 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("client_id", ALEXA_ID),
        ("redirect_uri", ALEXA_URI),
        ("scope", "devices"),
        ("state", "other"),
        ("response_type", "code"),
    ],
)
async def test_checklist_05_repeated_authorize_parameters_are_invalid_request(
    signed_in: Client, name: str, value: str
) -> None:
    path = authorize_path(scope="devices", extra=[(name, value)])
    if name == "scope":
        path = authorize_path(extra=[("scope", "devices"), ("scope", value)])
    response = await signed_in.get(path, allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers
    assert "invalid_request" in await response.text()


async def test_checklist_05_repeated_token_parameters_are_invalid_request(
    signed_in: Client,
) -> None:
    code = await get_code(signed_in)
    data = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code", code),
        ("redirect_uri", ALEXA_URI),
    ]
    status, body, _ = await post_form(signed_in, "/oauth/token", data, ALEXA_AUTH)
    assert (status, body["error"]) == (400, "invalid_request")
    assert (await exchange(signed_in, code))[0] == 200  # the code was not consumed


# 6 -------------------------------------------------------------------------------------------
async def test_checklist_06_each_client_is_held_to_its_auth_method(signed_in: Client) -> None:
    alexa_body = {"client_id": ALEXA_ID, "client_secret": ALEXA_SECRET}
    ifttt_basic = basic(IFTTT_ID, IFTTT_SECRET)

    # /token, authorization_code
    code = await get_code(signed_in)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": ALEXA_URI}
    status, body, headers = await post_form(signed_in, "/oauth/token", {**data, **alexa_body})
    assert (status, body["error"]) == (401, "invalid_client")
    assert headers["WWW-Authenticate"].startswith("Basic ")
    location = await consent(signed_in, authorize_path(IFTTT_ID, IFTTT_URI, scope="ifttt"))
    ifttt_code = redirect_params(location)["code"]
    ifttt_data = {"grant_type": "authorization_code", "code": ifttt_code, "redirect_uri": IFTTT_URI}
    status, body, headers = await post_form(signed_in, "/oauth/token", ifttt_data, ifttt_basic)
    assert (status, body["error"]) == (401, "invalid_client")
    assert "WWW-Authenticate" in headers
    # ... and the right methods work with the same codes.
    alexa = await post_form(signed_in, "/oauth/token", data, ALEXA_AUTH)
    ifttt = await post_form(signed_in, "/oauth/token", {**ifttt_data, **IFTTT_BODY})
    assert (alexa[0], ifttt[0]) == (200, 200)
    alexa_refresh = alexa[1]["refresh_token"]
    ifttt_refresh = ifttt[1]["refresh_token"]

    # /token, refresh_token
    wrong = await post_form(
        signed_in,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": alexa_refresh, **alexa_body},
    )
    assert (wrong[0], wrong[1]["error"]) == (401, "invalid_client")
    wrong = await post_form(
        signed_in,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": ifttt_refresh},
        ifttt_basic,
    )
    assert (wrong[0], wrong[1]["error"]) == (401, "invalid_client")
    assert (await refresh(signed_in, alexa_refresh))[0] == 200
    assert (await refresh(signed_in, ifttt_refresh, auth="ifttt"))[0] == 200

    # /revoke
    wrong = await post_form(signed_in, "/oauth/revoke", {"token": alexa_refresh, **alexa_body})
    assert (wrong[0], wrong[1]["error"]) == (401, "invalid_client")
    wrong = await post_form(signed_in, "/oauth/revoke", {"token": ifttt_refresh}, ifttt_basic)
    assert (wrong[0], wrong[1]["error"]) == (401, "invalid_client")
    ok = await post_form(signed_in, "/oauth/revoke", {"token": alexa_refresh}, ALEXA_AUTH)
    assert ok[0] == 200
    ok = await post_form(signed_in, "/oauth/revoke", {"token": ifttt_refresh, **IFTTT_BODY})
    assert ok[0] == 200


async def test_checklist_06_wrong_secret_and_two_methods_at_once_are_refused(
    signed_in: Client,
) -> None:
    code = await get_code(signed_in)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": ALEXA_URI}
    status, body, _ = await post_form(
        signed_in, "/oauth/token", data, basic(ALEXA_ID, ALEXA_SECRET + "x")
    )
    assert (status, body["error"]) == (401, "invalid_client")
    status, body, _ = await post_form(
        signed_in, "/oauth/token", {**data, "client_secret": ALEXA_SECRET}, ALEXA_AUTH
    )
    assert (status, body["error"]) == (400, "invalid_request")


# 7 -------------------------------------------------------------------------------------------
async def test_checklist_07_refresh_grace_window_then_family_revocation(
    signed_in: Client, clock: Clock, oauth_settings: Settings
) -> None:
    first = await alexa_tokens(signed_in)
    status, second, _ = await refresh(signed_in, first["refresh_token"])
    assert status == 200
    grace = oauth_settings.oauth.refresh_grace_seconds
    clock.now += grace
    status, replay, _ = await refresh(signed_in, first["refresh_token"])
    assert status == 200
    assert (replay["access_token"], replay["refresh_token"]) == (
        second["access_token"],
        second["refresh_token"],
    )
    clock.now += 1
    status, late, _ = await refresh(signed_in, first["refresh_token"])
    assert (status, late["error"]) == (400, "invalid_grant")
    status, body, _ = await refresh(signed_in, second["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert await api_status(signed_in, second["access_token"]) == 401
    assert await api_status(signed_in, first["access_token"]) == 401


# 8 -------------------------------------------------------------------------------------------
async def test_checklist_08_refresh_token_of_another_client_is_invalid_grant(
    signed_in: Client,
) -> None:
    alexa = await alexa_tokens(signed_in)
    status, body, _ = await refresh(signed_in, alexa["refresh_token"], auth="ifttt")
    assert (status, body["error"]) == (400, "invalid_grant")
    assert await api_status(signed_in, alexa["access_token"]) == 200  # no side effects
    assert (await refresh(signed_in, alexa["refresh_token"]))[0] == 200


# 9 -------------------------------------------------------------------------------------------
async def test_checklist_09_revocation(signed_in: Client) -> None:
    unknown = await post_form(signed_in, "/oauth/revoke", {"token": "srr_unknown"}, ALEXA_AUTH)
    assert (unknown[0], unknown[1]) == (200, {})
    hinted = await post_form(
        signed_in,
        "/oauth/revoke",
        {"token": "whatever", "token_type_hint": "something_else"},
        ALEXA_AUTH,
    )
    assert hinted[0] == 200
    first = await alexa_tokens(signed_in)
    status, second, _ = await refresh(signed_in, first["refresh_token"])
    assert status == 200
    # An access token alone ...
    await post_form(signed_in, "/oauth/revoke", {"token": first["access_token"]}, ALEXA_AUTH)
    assert await api_status(signed_in, first["access_token"]) == 401
    assert await api_status(signed_in, second["access_token"]) == 200
    # ... a refresh token with every access token of its grant.
    revoked = await post_form(
        signed_in,
        "/oauth/revoke",
        {"token": second["refresh_token"], "token_type_hint": "refresh_token"},
        ALEXA_AUTH,
    )
    assert revoked[0] == 200
    assert await api_status(signed_in, second["access_token"]) == 401
    # Another client may not revoke Alexa's tokens.
    other = await alexa_tokens(signed_in)
    refused = await post_form(
        signed_in, "/oauth/revoke", {"token": other["refresh_token"], **IFTTT_BODY}
    )
    assert refused[0] == 400
    assert await api_status(signed_in, other["access_token"]) == 200


# 10 ------------------------------------------------------------------------------------------
async def test_checklist_10_no_raw_secret_in_the_database_or_logs(
    signed_in: Client,
    clock: Clock,
    oauth_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [ALEXA_SECRET, IFTTT_SECRET]
    code = await get_code(signed_in, authorize_path(code_challenge=CHALLENGE))
    secrets.append(code)
    status, first, _ = await exchange(signed_in, code, code_verifier=VERIFIER)
    assert status == 200
    status, second, _ = await refresh(signed_in, first["refresh_token"])
    status, replay, _ = await refresh(signed_in, first["refresh_token"])  # kept successor
    assert replay["access_token"] == second["access_token"]
    ifttt = await ifttt_tokens(signed_in)
    assert await api_status(signed_in, ifttt["access_token"]) == 200
    for body in (first, second, ifttt):
        secrets += [body["access_token"], body["refresh_token"]]
    await post_form(signed_in, "/oauth/revoke", {"token": ifttt["refresh_token"], **IFTTT_BODY})

    stored = b"".join(
        path.read_bytes() for path in oauth_settings.data_dir.rglob("*") if path.is_file()
    )
    assert len(stored) > 10_000
    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records
    )
    assert caplog.records
    for secret in secrets:
        assert secret.encode() not in stored, secret[:8]
        assert secret not in logged, secret[:8]
        assert hashlib.sha256(secret.encode()).hexdigest() not in logged


# 11 ------------------------------------------------------------------------------------------
async def test_checklist_11_metadata_names_the_issuer_endpoints_and_methods(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    https = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, public_url="https://home.example.com/"),
    )
    app: web.Application = create_app(https)
    client: Client = await aiohttp_client(app)
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status == 200
    document = await response.json()
    AuthorizationServerMetadata(document).validate()
    base = "https://home.example.com"
    assert document["issuer"] == base
    assert document["authorization_endpoint"] == f"{base}/oauth/authorize"
    assert document["token_endpoint"] == f"{base}/oauth/token"
    assert document["revocation_endpoint"] == f"{base}/oauth/revoke"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    methods = ["client_secret_basic", "client_secret_post"]
    assert document["token_endpoint_auth_methods_supported"] == methods
    assert document["revocation_endpoint_auth_methods_supported"] == methods


# 12 ------------------------------------------------------------------------------------------
async def test_checklist_12_token_responses_are_not_cached_and_last_the_configured_time(
    signed_in: Client, oauth_settings: Settings, core: Core
) -> None:
    code = await get_code(signed_in)
    status, body, headers = await exchange(signed_in, code)
    assert status == 200
    assert body["expires_in"] == oauth_settings.oauth.access_token_ttl_seconds == 3600
    assert headers["Cache-Control"] == "no-store"
    assert headers["Pragma"] == "no-cache"
    status, refreshed, headers = await refresh(signed_in, body["refresh_token"])
    assert status == 200
    assert refreshed["expires_in"] == 3600
    assert (headers["Cache-Control"], headers["Pragma"]) == ("no-store", "no-cache")
    status, _, headers = await exchange(signed_in, "src_not-a-code")
    assert status == 400
    assert (headers["Cache-Control"], headers["Pragma"]) == ("no-store", "no-cache")
    assert core.oauth.access_ttl == 3600


# 13 ------------------------------------------------------------------------------------------
async def test_checklist_13_consent_needs_the_csrf_token_and_answers_303(
    signed_in: Client, oauth_settings: Settings
) -> None:
    path = authorize_path(IFTTT_ID, IFTTT_URI, scope="ifttt")
    path = path.replace("state=st-123", "state=x%2By%20z%26%3D")
    page = await signed_in.get(path)
    html = await page.text()
    action = form_action(html)
    for token in (None, "forged", form_value(html, "csrf_token")[:-2]):
        data = (
            {"decision": "allow"} if token is None else {"decision": "allow", "csrf_token": token}
        )
        refused = await signed_in.post(action, data=data, allow_redirects=False)
        assert refused.status == 403
        assert "Location" not in refused.headers
    db = sqlite3.connect(f"file:{oauth_settings.data_dir / 'staterelay.db'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT count(*) FROM oauth_codes").fetchone()[0] == 0
    finally:
        db.close()
    accepted = await signed_in.post(
        action,
        data={"decision": "allow", "csrf_token": form_value(html, "csrf_token")},
        allow_redirects=False,
    )
    assert accepted.status == 303
    location = accepted.headers["Location"]
    assert location.startswith(IFTTT_URI + "?code=")
    assert redirect_params(location)["state"] == "x+y z&="
