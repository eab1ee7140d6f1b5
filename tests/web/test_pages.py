"""HTML responses: security headers (checklist 16), error pages, escaping, the API untouched."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import ClientResponse, web

from staterelay.browser.render import render
from staterelay.core.errors import Conflict, NotFound
from tests.web.support import PASSWORD, Browser, add_user, setup_links

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def assert_page_headers(response: ClientResponse, *, csp: str = CSP) -> None:
    """The headers every sign-in and account page carries."""
    headers = response.headers
    assert headers["Content-Security-Policy"] == csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"] == "text/html; charset=utf-8"


async def test_sign_in_and_account_pages_carry_the_security_headers(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """Checklist 16: login, setup, sign-up, invite and account pages, and failed sign-ins."""
    caplog.set_level(logging.INFO, logger="staterelay.ui")
    app = make_app(registration="open")
    browser = await browse(app)
    await add_user(browser.core, "alice@example.com", is_admin=True)
    paths = ["/login", "/register", "/"]
    for path in paths:
        assert_page_headers(await browser.get(path))
    failed = await browser.post("/login", {"email": "alice@example.com", "password": "nope" * 3})
    assert failed.status == 422
    assert_page_headers(failed)
    await browser.login("alice@example.com")
    assert_page_headers(await browser.get("/dashboard/settings"))
    invite = await browser.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
    assert_page_headers(invite)
    token = (await invite.text()).split("/invite/")[1].split('"')[0]
    assert_page_headers(await (await browse(app)).get(f"/invite/{token}"))


async def test_setup_page_carries_the_security_headers(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """The setup page holds a one-time token in its URL: no referrer, no caching, no frames."""
    caplog.set_level(logging.INFO, logger="staterelay.ui")
    browser = await browse(make_app())
    ((_, token),) = setup_links(caplog.text)
    assert_page_headers(await browser.get(f"/setup?token={token}"))


async def test_form_action_can_be_left_out_or_widened(make_app: MakeApp, browse: Browse) -> None:
    """A consent-style page may drop form-action (its POST redirects to another site)."""

    async def without(request: web.Request) -> web.Response:
        return render(request, "error.html", {"title": "t", "message": "m"}, form_action=False)

    async def widened(request: web.Request) -> web.Response:
        return render(
            request,
            "error.html",
            {"title": "t", "message": "m"},
            form_action="'self' https://pitangui.amazon.com",
        )

    app = make_app()
    app.router.add_get("/test/without", without)
    app.router.add_get("/test/widened", widened)
    browser = await browse(app)
    omitted = (await browser.get("/test/without")).headers["Content-Security-Policy"]
    assert "form-action" not in omitted
    assert omitted.endswith("frame-ancestors 'none'")
    extended = (await browser.get("/test/widened")).headers["Content-Security-Policy"]
    assert extended.endswith("form-action 'self' https://pitangui.amazon.com")


async def test_unknown_pages_are_html_404s(make_app: MakeApp, browse: Browse) -> None:
    """A missing page gets the error page with all the headers; a missing static file a 404."""
    browser = await browse(make_app())
    response = await browser.get("/no/such/page")
    assert response.status == 404
    assert_page_headers(response)
    assert "Page not found" in await response.text()
    assert (await browser.get("/static/nothing.css")).status == 404
    wrong_method = await browser.client.request("DELETE", "/login")
    assert wrong_method.status == 405
    assert set(wrong_method.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    assert_page_headers(wrong_method)


async def test_domain_errors_become_pages(make_app: MakeApp, browse: Browse) -> None:
    """A domain error raised by an HTML handler is a page with its status and message."""

    async def missing(request: web.Request) -> web.Response:
        raise NotFound("no such device")

    async def clash(request: web.Request) -> web.Response:
        raise Conflict("a device with this name exists")

    app = make_app()
    app.router.add_get("/test/missing", missing)
    app.router.add_get("/test/clash", clash)
    browser = await browse(app)
    response = await browser.get("/test/missing")
    assert response.status == 404
    assert "No such device." in await response.text()
    assert_page_headers(response)
    response = await browser.get("/test/clash")
    assert response.status == 409
    assert "A device with this name exists." in await response.text()


async def test_unexpected_errors_are_a_500_page_without_details(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """The page says nothing about the failure; the log has the traceback."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("database password is hunter2")

    app = make_app()
    app.router.add_get("/test/broken", broken)
    browser = await browse(app)
    response = await browser.get("/test/broken")
    text = await response.text()
    assert response.status == 500
    assert_page_headers(response)
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert "Something went wrong" in text
    assert "hunter2" in caplog.text


async def test_user_input_is_escaped(make_app: MakeApp, browse: Browse) -> None:
    """What a visitor typed comes back escaped, never as markup."""
    browser = await browse(make_app())
    response = await browser.post(
        "/login", {"email": '"><script>alert(1)</script>', "password": PASSWORD}
    )
    text = await response.text()
    assert "<script>" not in text
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text


async def test_the_api_and_operations_endpoints_are_left_alone(
    make_app: MakeApp, browse: Browse
) -> None:
    """JSON answers keep their format and get no page headers or cookies."""
    browser = await browse(make_app())
    api = await browser.get("/api/v1/devices")
    assert api.status == 401
    assert api.content_type == "application/problem+json"
    assert "Content-Security-Policy" not in api.headers
    assert "Set-Cookie" not in api.headers
    missing = await browser.get("/api/v1/nothing-here")
    assert missing.content_type == "application/problem+json"
    health = await browser.get("/healthz")
    assert health.content_type == "application/json"
    assert "Content-Security-Policy" not in health.headers


async def test_static_files_are_served(make_app: MakeApp, browse: Browse) -> None:
    """The one stylesheet and the icon, with nosniff."""
    browser = await browse(make_app())
    css = await browser.get("/static/app.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    assert "prefers-color-scheme: dark" in await css.text()
    icon = await browser.get("/static/icon.svg")
    assert icon.status == 200
    page = await browser.page("/login")
    assert '<link rel="stylesheet" href="/static/app.css">' in page
    assert "<script" not in page
    assert "style=" not in page
