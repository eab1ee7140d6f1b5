"""Cookie attributes: the session cookie on https and on plain http (checklist 15)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import Morsel, SimpleCookie

from aiohttp import ClientResponse, web

from tests.web.support import PASSWORD, Browser, add_user, csrf_in

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]


def set_cookies(response: ClientResponse) -> dict[str, Morsel[str]]:
    """Every cookie a response sets, by name, with its attributes."""
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


async def sign_in_by_hand(browser: Browser) -> ClientResponse:
    """Sign in sending the pre-session cookie by hand: an http test client keeps no
    ``Secure`` cookies, so the jar cannot be used against an https-configured app."""
    form = await browser.get("/login")
    nonce = set_cookies(form)["__Host-sr_csrf"]
    assert nonce["secure"] is True
    return await browser.client.post(
        "/login",
        data={
            "email": "alice@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_in(await form.text()),
        },
        headers={"Cookie": f"__Host-sr_csrf={nonce.value}"},
        allow_redirects=False,
    )


async def test_session_cookie_on_https_is_host_only_secure_httponly_lax(
    make_app: MakeApp, browse: Browse
) -> None:
    """``__Host-sr_session``: HttpOnly, Secure, SameSite=Lax, Path=/, no Domain, a Max-Age."""
    browser = await browse(make_app(public_url="https://staterelay.example"))
    await add_user(browser.core, "alice@example.com")
    response = await sign_in_by_hand(browser)
    assert response.status == 303
    cookie = set_cookies(response)["__Host-sr_session"]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["domain"] == ""
    assert int(cookie["max-age"]) == 30 * 86400
    assert "Domain" not in response.headers["Set-Cookie"]
    assert await browser.core.sessions.resolve(cookie.value) is not None


async def test_logout_on_https_clears_the_cookie_with_the_same_attributes(
    make_app: MakeApp, browse: Browse
) -> None:
    """The clearing cookie keeps Secure and Path=/ so browsers accept it for a __Host- name."""
    browser = await browse(make_app(public_url="https://staterelay.example"))
    await add_user(browser.core, "alice@example.com")
    session = set_cookies(await sign_in_by_hand(browser))["__Host-sr_session"].value
    account = await browser.client.get(
        "/dashboard/settings", headers={"Cookie": f"__Host-sr_session={session}"}
    )
    assert account.status == 200
    response = await browser.client.post(
        "/logout",
        data={"csrf_token": csrf_in(await account.text())},
        headers={"Cookie": f"__Host-sr_session={session}"},
        allow_redirects=False,
    )
    assert response.status == 303
    cleared = set_cookies(response)["__Host-sr_session"]
    assert (cleared.value, cleared["max-age"], cleared["path"]) == ("", "0", "/")
    assert cleared["secure"] is True
    assert await browser.core.sessions.resolve(session) is None


async def test_session_cookie_on_plain_http_is_not_secure(
    make_app: MakeApp, browse: Browse
) -> None:
    """On an http public URL (loopback development) the cookie is ``sr_session``, not Secure."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    response = await browser.login("alice@example.com")
    cookie = set_cookies(response)["sr_session"]
    assert cookie["httponly"] is True
    assert cookie["secure"] == ""
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["domain"] == ""
