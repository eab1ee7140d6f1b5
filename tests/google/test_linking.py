"""Account linking as Google does it, and the token rules of the ``google`` client: opaque
tokens, either client authentication, PKCE optional, concurrent refreshes both answered
with one successor, and an old refresh token good until its successor is used; other
clients keep strict rotation."""

from __future__ import annotations

import asyncio
from typing import Any

from staterelay.core import Core
from tests.google.conftest import (
    GOOGLE_ID,
    GOOGLE_SECRET,
    GOOGLE_URI,
    GOOGLE_URIS,
    JSON,
    basic,
    google_code,
    intent,
    link_google,
    request,
    synced,
)
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_SECRET,
    ALEXA_URI,
    Client,
    authorize_path,
    consent,
    redirect_params,
    sign_in,
)


async def refresh(browser: Client, refresh_token: str, *, client: str = GOOGLE_ID) -> Any:
    """A refresh as the client sends it (Google: secret in the body; Alexa: Basic)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    headers = {}
    if client == GOOGLE_ID:
        form |= {"client_id": GOOGLE_ID, "client_secret": GOOGLE_SECRET}
    else:
        headers["Authorization"] = basic(ALEXA_ID, ALEXA_SECRET)
    return await browser.post("/oauth/token", data=form, headers=headers)


async def test_the_full_link_with_the_secret_in_the_body(
    browser: Client, core: Core, user: Any
) -> None:
    """Authorize with Google's redirect URI and user_locale, exchange with the secret in
    the body, then SYNC with the opaque access token."""
    tokens = await link_google(browser)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "devices"
    assert tokens["expires_in"] == 3600
    assert tokens["access_token"].count(".") == 0  # opaque, not a JWT
    assert tokens["refresh_token"]
    answer = await synced(browser, tokens["access_token"])
    assert answer["payload"]["agentUserId"] == user.id


async def test_the_link_with_http_basic_and_the_sandbox_uri(
    browser: Client, core: Core, user: Any
) -> None:
    """Google's console can switch to HTTP Basic; the sandbox redirect URI works too."""
    code = await google_code(browser, GOOGLE_URIS[1])
    answer = await browser.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": GOOGLE_URIS[1]},
        headers={"Authorization": basic(GOOGLE_ID, GOOGLE_SECRET)},
    )
    assert answer.status == 200, await answer.text()
    tokens: JSON = await answer.json()
    await synced(browser, tokens["access_token"])


async def test_basic_stays_refused_for_a_client_registered_for_the_body(
    browser: Client, core: Core, user: Any
) -> None:
    """The either-way rule is Google's alone: Alexa's client (Basic) may not use the body."""
    await sign_in(browser, next_path=authorize_path())
    location = await consent(browser, authorize_path(scope="devices"))
    code = redirect_params(location)["code"]
    answer = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": ALEXA_URI,
            "client_id": ALEXA_ID,
            "client_secret": ALEXA_SECRET,
        },
    )
    assert answer.status == 401
    assert (await answer.json())["error"] == "invalid_client"


async def test_two_concurrent_refreshes_both_succeed_with_one_successor(
    browser: Client, tokens: JSON
) -> None:
    """Google may refresh twice at once with one refresh token: both answers carry the same
    new pair, and it works."""
    first, second = await asyncio.gather(
        refresh(browser, tokens["refresh_token"]), refresh(browser, tokens["refresh_token"])
    )
    assert first.status == 200, await first.text()
    assert second.status == 200, await second.text()
    one, two = await first.json(), await second.json()
    assert one["access_token"] == two["access_token"]
    assert one["refresh_token"] == two["refresh_token"]
    assert one["refresh_token"] != tokens["refresh_token"]
    await synced(browser, one["access_token"])


async def test_the_old_refresh_token_works_until_its_successor_is_used(
    browser: Client, tokens: JSON, clock: Any
) -> None:
    """Google lost the refresh answer: long after the grace window the old refresh token
    still works (a new pair, the unused one revoked); once the successor was used, the old
    one is over."""
    first = await refresh(browser, tokens["refresh_token"])
    lost = await first.json()
    clock.now += 3600  # far past the replay window
    again = await refresh(browser, tokens["refresh_token"])
    assert again.status == 200, await again.text()
    kept = await again.json()
    assert kept["refresh_token"] not in (lost["refresh_token"], tokens["refresh_token"])
    # The successor Google never saw is revoked; the new one works.
    refused = await refresh(browser, lost["refresh_token"])
    assert refused.status == 400
    assert (await refused.json())["error"] == "invalid_grant"
    used = await refresh(browser, kept["refresh_token"])
    assert used.status == 200
    newest = await used.json()
    clock.now += 3600
    # The successor was used: the old token is over (and its reuse ends the grant).
    stale = await refresh(browser, tokens["refresh_token"])
    assert stale.status == 400
    assert (await stale.json())["error"] == "invalid_grant"
    status, _ = await intent(browser, newest["access_token"], request("SYNC"))
    assert status == 401


async def test_refresh_tokens_do_not_expire_while_in_use(
    browser: Client, tokens: JSON, clock: Any
) -> None:
    """A refresh token months old still refreshes; access tokens expire after the hour."""
    clock.now += 120 * 86400
    status, _ = await intent(browser, tokens["access_token"], request("SYNC"))
    assert status == 401
    answer = await refresh(browser, tokens["refresh_token"])
    assert answer.status == 200
    await synced(browser, (await answer.json())["access_token"])


async def test_other_clients_keep_strict_rotation(
    browser: Client, core: Core, user: Any, clock: Any
) -> None:
    """Alexa's client: a rotated refresh token used after the grace window is refused and
    its grant revoked, even though its successor was never used."""
    await sign_in(browser, next_path=authorize_path())
    location = await consent(browser, authorize_path(scope="devices"))
    code = redirect_params(location)["code"]
    answer = await browser.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": ALEXA_URI},
        headers={"Authorization": basic(ALEXA_ID, ALEXA_SECRET)},
    )
    alexa = await answer.json()
    rotated = await refresh(browser, alexa["refresh_token"], client=ALEXA_ID)
    successor = await rotated.json()
    clock.now += 3600
    stale = await refresh(browser, alexa["refresh_token"], client=ALEXA_ID)
    assert stale.status == 400
    assert (await stale.json())["error"] == "invalid_grant"
    gone = await refresh(browser, successor["refresh_token"], client=ALEXA_ID)
    assert gone.status == 400


async def test_pkce_is_optional_for_google_and_checked_when_sent(
    browser: Client, core: Core, user: Any
) -> None:
    """With a code challenge, the verifier is required and checked."""
    import base64
    import hashlib

    verifier = "v" * 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    path = authorize_path(
        GOOGLE_ID,
        GOOGLE_URI,
        scope="devices",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    await sign_in(browser, next_path=path)
    code = redirect_params(await consent(browser, path))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": GOOGLE_URI,
        "client_id": GOOGLE_ID,
        "client_secret": GOOGLE_SECRET,
    }
    missing = await browser.post("/oauth/token", data=form)
    assert missing.status == 400
    answer = await browser.post("/oauth/token", data={**form, "code_verifier": verifier})
    assert answer.status == 200, await answer.text()
