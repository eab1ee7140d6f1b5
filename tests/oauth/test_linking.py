"""Whole links as Alexa and IFTTT make them, driven by authlib's own OAuth client."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestServer
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from staterelay.core import Core
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_SECRET,
    ALEXA_URI,
    IFTTT_ID,
    IFTTT_SECRET,
    IFTTT_URI,
    Client,
    Clock,
    consent,
    redirect_params,
    sign_in,
)


def path_of(url: str) -> str:
    """The path and query of an absolute URL."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def api_me(browser: Client, access_token: str) -> tuple[int, dict[str, Any]]:
    """``GET /api/v1/me`` with a bearer token."""
    response = await browser.get("/api/v1/me", headers={"Authorization": f"Bearer {access_token}"})
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_alexa_links_with_http_basic_and_pkce(
    browser: Client, server: TestServer, core: Core, user: Any, clock: Clock, port: int
) -> None:
    token_url = f"http://127.0.0.1:{port}/oauth/token"
    async with AsyncOAuth2Client(
        ALEXA_ID,
        ALEXA_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
        scope="devices",
        redirect_uri=ALEXA_URI,
        code_challenge_method="S256",
    ) as alexa:
        verifier = generate_token(64)
        url, state = alexa.create_authorization_url(
            f"http://localhost:{port}/oauth/authorize", code_verifier=verifier
        )
        # Not signed in yet: the authorization URI sends the user to sign in first.
        first = await browser.get(path_of(url), allow_redirects=False)
        assert first.status == 303
        login = first.headers["Location"]
        assert login.startswith("/login?next=")
        await sign_in(browser, next_path=path_of(url))
        location = await consent(browser, path_of(url))
        assert location.startswith(ALEXA_URI + "?")

        token = await alexa.fetch_token(
            token_url, authorization_response=location, state=state, code_verifier=verifier
        )
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] == 3600
        assert token["scope"] == "devices"
        status, me = await api_me(browser, token["access_token"])
        assert status == 200, me
        grant = (await core.oauth.list_user_grants(user.tenant_id, user.id))[0]
        assert me == {
            "user_id": user.id,
            "email": user.email,
            "tenant_id": user.tenant_id,
            "scopes": ["read", "write"],
            "credential": "oauth",
            "credential_id": grant.grant_id,
            "client_id": ALEXA_ID,
            "device_ids": None,
        }

        clock.now += 600
        refreshed = await alexa.refresh_token(token_url, refresh_token=token["refresh_token"])
        assert refreshed["access_token"] != token["access_token"]
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert (await api_me(browser, refreshed["access_token"]))[0] == 200

        # Alexa retries with the previous refresh token: the same new pair, not an unlink.
        clock.now += 60
        retried = await alexa.refresh_token(token_url, refresh_token=token["refresh_token"])
        assert retried["access_token"] == refreshed["access_token"]
        assert retried["refresh_token"] == refreshed["refresh_token"]

        # The user disables the skill; Alexa revokes its refresh token (RFC 7009).
        await alexa.revoke_token(
            f"http://127.0.0.1:{port}/oauth/revoke",
            token=refreshed["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert (await api_me(browser, refreshed["access_token"]))[0] == 401
        with pytest.raises(OAuthError) as raised:
            await alexa.refresh_token(token_url, refresh_token=refreshed["refresh_token"])
        assert raised.value.error == "invalid_grant"
    assert await core.oauth.list_user_grants(user.tenant_id, user.id) == []


async def test_ifttt_links_with_credentials_in_the_body(
    browser: Client, server: TestServer, core: Core, user: Any, clock: Clock, port: int
) -> None:
    token_url = f"http://127.0.0.1:{port}/oauth/token"
    await sign_in(browser)
    async with AsyncOAuth2Client(
        IFTTT_ID,
        IFTTT_SECRET,
        token_endpoint_auth_method="client_secret_post",
        scope="ifttt",
        redirect_uri=IFTTT_URI,
    ) as ifttt:
        url, state = ifttt.create_authorization_url(f"http://localhost:{port}/oauth/authorize")
        location = await consent(browser, path_of(url))
        assert location.startswith(IFTTT_URI + "?")
        token = await ifttt.fetch_token(token_url, authorization_response=location, state=state)
        assert token["scope"] == "ifttt"
        info = await browser.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert info.status == 200
        assert await info.json() == {
            "sub": user.id,
            "user_id": user.id,
            "email": user.email,
            "tenant_id": user.tenant_id,
            "client_id": IFTTT_ID,
        }
        apps = await core.oauth.list_user_grants(user.tenant_id, user.id)
        assert [(a.client_id, a.client_name) for a in apps] == [(IFTTT_ID, "IFTTT")]

        refreshed = await ifttt.refresh_token(token_url, refresh_token=token["refresh_token"])
        # IFTTT's endpoint test: the older refresh token does not expire immediately.
        clock.now += 30
        again = await ifttt.refresh_token(token_url, refresh_token=token["refresh_token"])
        assert again["access_token"] == refreshed["access_token"]
        assert again["refresh_token"] == refreshed["refresh_token"]

        # Long after the window the old token is a replay: the whole link is revoked.
        clock.now += 3600
        with pytest.raises(OAuthError) as raised:
            await ifttt.refresh_token(token_url, refresh_token=token["refresh_token"])
        assert raised.value.error == "invalid_grant"
        with pytest.raises(OAuthError):
            await ifttt.refresh_token(token_url, refresh_token=refreshed["refresh_token"])
    assert await core.oauth.list_user_grants(user.tenant_id, user.id) == []


async def test_denial_redirects_with_access_denied_and_the_state(
    browser: Client, server: TestServer, user: Any
) -> None:
    await sign_in(browser)
    location = await consent(
        browser,
        f"/oauth/authorize?response_type=code&client_id={IFTTT_ID}"
        f"&redirect_uri={IFTTT_URI}&state=a%26b%20c&scope=ifttt",
        decision="deny",
    )
    assert location.startswith(IFTTT_URI + "?")
    params = redirect_params(location)
    assert params["error"] == "access_denied"
    assert params["state"] == "a&b c"
    assert "code" not in params
