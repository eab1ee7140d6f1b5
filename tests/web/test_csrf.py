"""CSRF: every unsafe browser route needs the token; tokens are bound; foreign origins fail."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from tests.web.support import OTHER_PASSWORD, PASSWORD, Browser, add_user

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Called by Alexa's and IFTTT's servers with client credentials and no cookies: a CSRF token
# would mean nothing there (the OAuth suite covers their authentication).
# Alexa's directives come from the Lambda relay with the relay secret and a bearer token;
# Google Home's intents come from Google with the user's bearer token.
MACHINE_ENDPOINTS = {"/oauth/token", "/oauth/revoke", "/alexa/smart_home", "/google/fulfillment"}
UI_ROUTES = {
    "/login",
    "/logout",
    "/setup",
    "/register",
    "/invite/{token}",
    "/dashboard/settings/password",
    "/dashboard/settings/sessions/{session_id}/revoke",
    "/dashboard/settings/invites",
    "/dashboard/settings/invites/{invite_id}/revoke",
}
# Everything a form could carry, so that only the missing token stops the request.
FULL_FORM = {
    "email": "new@example.com",
    "password": PASSWORD,
    "confirm_password": PASSWORD,
    "current_password": PASSWORD,
    "new_password": OTHER_PASSWORD,
    "confirm_new_password": OTHER_PASSWORD,
    "token": "A" * 43,
    "decision": "allow",
    "next": "/",
}


def unsafe_browser_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every unsafe route outside the JSON API, found by walking
    the router, so that routes added later are covered without editing this test."""
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        # IFTTT's service API is called by IFTTT's servers with a bearer token or the
        # service key and never a cookie, like the JSON API: no form, no CSRF token.
        if route.method in SAFE_METHODS or path.startswith(("/api/", "/ifttt/")):
            continue
        if path in MACHINE_ENDPOINTS:
            continue
        found.add((route.method, path))
    return sorted(found)


def fill(path: str, session_id: str) -> str:
    """A concrete URL for a route template (the caller's own session id where one fits)."""
    path = path.replace("{session_id}", session_id)
    return re.sub(r"\{[^}]+\}", "A" * 43, path)


async def test_every_unsafe_browser_route_requires_the_csrf_token(
    make_app: MakeApp, browse: Browse
) -> None:
    """Checklist 14: without the token, or with a wrong one, every route answers 403 and
    changes nothing: the user stays signed in with the same password and nothing is made."""
    app = make_app(registration="open")
    browser = await browse(app)
    admin = await add_user(browser.core, "admin@example.com", is_admin=True)
    await browser.login("admin@example.com")
    signed = await browser.core.sessions.resolve(browser.cookie("sr_session") or "")
    assert signed is not None
    routes = unsafe_browser_routes(app)
    assert {path for _, path in routes} >= UI_ROUTES
    for method, template in routes:
        url = fill(template, signed.session_id)
        for token in (None, "", "A" * 43, signed.csrf_token[:-1]):
            data = dict(FULL_FORM)
            if token is not None:
                data["csrf_token"] = token
            response = await browser.client.request(method, url, data=data, allow_redirects=False)
            assert response.status == 403, (method, url, token, response.status)
            assert response.content_type == "text/html"
            assert "This form has expired" in await response.text()
    assert await browser.signed_in_as() == "admin@example.com"
    assert await browser.core.users.count() == 1
    assert await browser.core.accounts.list_invites(signed) == []
    await browser.core.accounts.login(email=admin.email, password=PASSWORD, ip="check")


async def test_signed_out_posts_need_the_token_too(make_app: MakeApp, browse: Browse) -> None:
    """Sign-in, setup, sign-up and invite forms are refused without a token (login CSRF)."""
    app = make_app(registration="open")
    browser = await browse(app)
    await add_user(browser.core, "alice@example.com")
    await browser.page("/login")  # the browser holds a pre-session cookie
    for method, template in unsafe_browser_routes(app):
        if template.startswith("/oauth/"):
            continue  # it sends signed-out visitors to sign in first; the OAuth suite checks it
        response = await browser.client.request(
            method, fill(template, "x"), data=FULL_FORM, allow_redirects=False
        )
        assert response.status == 403, (method, template)
    assert await browser.signed_in_as() is None
    assert await browser.core.users.count() == 1


async def test_a_pre_session_token_works_only_with_its_own_cookie(
    make_app: MakeApp, browse: Browse
) -> None:
    """A token lifted from one browser is useless in another, with or without its cookie."""
    app = make_app()
    victim = await browse(app)
    attacker = await browse(app)
    await add_user(victim.core, "alice@example.com")
    stolen = await attacker.token_from("/login")
    fields = {"email": "alice@example.com", "password": PASSWORD}
    assert (await victim.post("/login", fields, csrf=stolen)).status == 403
    await victim.page("/login")
    assert (await victim.post("/login", fields, csrf=stolen)).status == 403
    assert (await attacker.post("/login", fields, csrf=stolen)).status == 303


async def test_a_session_token_works_only_in_its_own_session(
    make_app: MakeApp, browse: Browse
) -> None:
    """Two sessions of one user have different tokens; neither accepts the other's."""
    app = make_app()
    one = await browse(app)
    two = await browse(app)
    await add_user(one.core, "alice@example.com")
    await one.login("alice@example.com")
    await two.login("alice@example.com")
    token_one = await one.token_from("/dashboard/settings")
    assert token_one != await two.token_from("/dashboard/settings")
    assert (await two.post("/logout", {}, csrf=token_one)).status == 403
    assert await two.signed_in_as() == "alice@example.com"


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://evil.example", 403),
        ("null", 403),
        ("http://localhost:8081", 403),
        ("https://localhost:8080", 403),
        ("http://localhost:8080", 303),
        ("HTTP://LOCALHOST:8080", 303),
    ],
)
async def test_unsafe_requests_from_other_origins_are_refused(
    make_app: MakeApp, browse: Browse, origin: str, status: int
) -> None:
    """A present Origin must be the public URL's, even with a valid CSRF token."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    response = await browser.post(
        "/login",
        {"email": "alice@example.com", "password": PASSWORD},
        headers={"Origin": origin},
    )
    assert response.status == status
    if status == 403:
        assert "Request from another site" in await response.text()
        assert browser.cookie("sr_session") is None


@pytest.mark.parametrize(
    ("fetch_site", "status"),
    [("same-origin", 303), ("cross-site", 403), ("same-site", 403), (None, 403)],
)
async def test_a_null_origin_passes_only_from_our_own_page(
    make_app: MakeApp, browse: Browse, fetch_site: str | None, status: int
) -> None:
    """Our pages say ``Referrer-Policy: no-referrer``, so browsers post their forms with
    ``Origin: null``; ``Sec-Fetch-Site: same-origin`` (set only by the browser) lets it in."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    headers = {"Origin": "null"}
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    response = await browser.post(
        "/login", {"email": "alice@example.com", "password": PASSWORD}, headers=headers
    )
    assert response.status == status


async def test_the_pre_session_cookie_comes_only_with_a_form(
    make_app: MakeApp, browse: Browse
) -> None:
    """Pages without forms set no cookie; the sign-in form sets a short-lived HttpOnly one."""
    browser = await browse(make_app())
    home = await browser.get("/")
    assert home.status == 200
    assert "Set-Cookie" not in home.headers
    login = await browser.get("/login")
    cookie = login.headers["Set-Cookie"]
    assert cookie.startswith("sr_csrf=")
    for attribute in ("HttpOnly", "Max-Age=7200", "Path=/", "SameSite=Lax"):
        assert attribute in cookie
    again = await browser.get("/login")
    assert "Set-Cookie" not in again.headers
