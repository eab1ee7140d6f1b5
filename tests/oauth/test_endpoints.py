"""The authorization endpoint's edges, the consent page's headers, userinfo and startup."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.settings import Settings
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_URI,
    IFTTT_ID,
    IFTTT_URI,
    Client,
    Clock,
    authorize_path,
    form_action,
    form_value,
    redirect_params,
    sign_in,
)
from tests.oauth.test_checklist import alexa_tokens


@pytest.fixture
async def signed_in(browser: Client, server: TestServer, user: Any) -> Client:
    """The browser, signed in as the user."""
    await sign_in(browser)
    return browser


async def test_consent_page_names_the_client_and_allows_the_redirect(
    signed_in: Client,
) -> None:
    response = await signed_in.get(authorize_path(scope="devices"))
    assert response.status == 200
    html = await response.text()
    assert "Link Amazon Alexa to StateRelay?" in html
    assert "alice@example.com" in html
    assert "switch and change them" in html
    assert "pitangui.amazon.com" in html
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "form-action" not in csp  # it would block the redirect back to Alexa
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_consent_post_revalidates_the_original_request(signed_in: Client) -> None:
    page = await signed_in.get(authorize_path())
    html = await page.text()
    tampered = form_action(html).replace("pitangui.amazon.com", "evil.example")
    response = await signed_in.post(
        tampered,
        data={"decision": "allow", "csrf_token": form_value(html, "csrf_token")},
        allow_redirects=False,
    )
    assert response.status == 400
    assert "Location" not in response.headers


async def test_a_scope_beyond_the_client_is_refused_back_to_the_client(
    signed_in: Client,
) -> None:
    response = await signed_in.get(authorize_path(scope="devices ifttt"), allow_redirects=False)
    assert response.status == 302
    params = redirect_params(response.headers["Location"])
    assert (params["error"], params["state"]) == ("invalid_scope", "st-123")


async def test_redirect_uri_may_be_left_out_when_only_one_is_registered(
    signed_in: Client,
) -> None:
    page = await signed_in.get(
        f"/oauth/authorize?response_type=code&client_id={IFTTT_ID}&state=s1", allow_redirects=False
    )
    assert page.status == 200
    html = await page.text()
    answer = await signed_in.post(
        form_action(html),
        data={"decision": "allow", "csrf_token": form_value(html, "csrf_token")},
        allow_redirects=False,
    )
    assert answer.headers["Location"].startswith(IFTTT_URI + "?code=")
    alexa = await signed_in.get(
        f"/oauth/authorize?response_type=code&client_id={ALEXA_ID}&state=s1",
        allow_redirects=False,
    )
    assert alexa.status == 400  # three registered: the client must say which
    assert "Location" not in alexa.headers


async def test_an_unsupported_response_type_goes_back_to_the_client(signed_in: Client) -> None:
    path = authorize_path().replace("response_type=code", "response_type=token")
    response = await signed_in.get(path, allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(ALEXA_URI + "?")
    assert redirect_params(location)["error"] == "unsupported_response_type"


async def test_a_signed_out_consent_post_goes_to_sign_in_first(
    browser: Client, server: TestServer
) -> None:
    response = await browser.post(authorize_path(), data={}, allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    assert location.startswith("/login?")
    next_path = redirect_params(location)["next"]
    assert next_path.startswith("/oauth/authorize?")
    assert redirect_params(next_path) == redirect_params(authorize_path())


async def test_sign_in_returns_to_the_exact_authorization_request(
    browser: Client, server: TestServer, user: Any
) -> None:
    path = authorize_path(IFTTT_ID, IFTTT_URI, scope="ifttt").replace(
        "state=st-123", "state=a%20b%26c%2Bd"
    )
    first = await browser.get(path, allow_redirects=False)
    assert first.status == 303
    next_path = redirect_params(first.headers["Location"])["next"]
    assert redirect_params(next_path)["state"] == "a b&c+d"
    await sign_in(browser, next_path=next_path)
    page = await browser.get(next_path)
    html = await page.text()
    answer = await browser.post(
        form_action(html),
        data={"decision": "allow", "csrf_token": form_value(html, "csrf_token")},
        allow_redirects=False,
    )
    assert answer.status == 303
    assert redirect_params(answer.headers["Location"])["state"] == "a b&c+d"


async def test_userinfo_answers_bearer_errors(
    signed_in: Client, clock: Clock, oauth_settings: Settings
) -> None:
    missing = await signed_in.get("/oauth/userinfo")
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = await signed_in.get(
        "/oauth/userinfo", headers={"Authorization": "Bearer sra_unknown"}
    )
    assert unknown.status == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    tokens = await alexa_tokens(signed_in)
    clock.now += oauth_settings.oauth.access_token_ttl_seconds
    expired = await signed_in.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert expired.status == 401
    assert (await expired.json())["error_description"] == "The access token has expired."


async def test_grant_last_use_is_flushed_on_shutdown(
    signed_in: Client, core: Core, user: Any, server: TestServer
) -> None:
    tokens = await alexa_tokens(signed_in)
    response = await signed_in.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status == 200
    await server.close()
    await core.store.open()
    try:
        apps = await core.store.list_oauth_grants(user.tenant_id, user.id)
        assert apps[0].last_used_at is not None
    finally:
        await core.store.close()


async def test_oauth_refuses_to_run_on_an_insecure_public_url(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    lan = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, public_url="http://192.168.1.20:8080"),
    )
    app: web.Application = create_app(lan)
    client: Client = await aiohttp_client(app)
    token = await client.post("/oauth/token", data={"grant_type": "refresh_token"})
    assert token.status == 400
    assert (await token.json())["error"] == "insecure_transport"
    authorize = await client.get(authorize_path(), allow_redirects=False)
    assert authorize.status == 500
    assert "Location" not in authorize.headers
