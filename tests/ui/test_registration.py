"""Sign-up per registration mode, and sign-up that never tells which emails exist."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from tests.web.support import OTHER_PASSWORD, PASSWORD, Browser, add_user

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]


def sign_up(email: str, password: str = PASSWORD) -> dict[str, str]:
    """The sign-up form, filled in."""
    return {"email": email, "password": password, "confirm_password": password}


@pytest.mark.parametrize("mode", ["invite", "closed"])
async def test_register_is_a_404_unless_open(make_app: MakeApp, browse: Browse, mode: str) -> None:
    """Invite and closed instances have no sign-up page and create nobody."""
    browser = await browse(make_app(registration=mode))
    page = await browser.get("/register")
    assert page.status == 404
    assert page.content_type == "text/html"
    assert "/register" not in await browser.page("/login")
    posted = await browser.post("/register", sign_up("new@example.com"), form_page="/login")
    assert posted.status == 404
    assert await browser.core.users.count() == 0


async def test_open_sign_up_gives_each_account_its_own_tenant(
    make_app: MakeApp, browse: Browse
) -> None:
    """Each sign-up is the admin of a new tenant and can then sign in."""
    browser = await browse(make_app(registration="open"))
    assert 'href="/register"' in await browser.page("/login")
    for email in ("one@example.com", "two@example.com"):
        response = await browser.post("/register", sign_up(email))
        assert response.status == 303
        assert response.headers["Location"] == "/login?registered=1"
    one = await browser.core.users.by_email("one@example.com")
    two = await browser.core.users.by_email("two@example.com")
    assert one.is_admin
    assert two.is_admin
    assert one.tenant_id != two.tenant_id
    assert "Sign in with the email and password you chose." in await browser.page(
        "/login?registered=1"
    )
    await browser.login("two@example.com")


async def test_sign_up_does_not_reveal_existing_emails(make_app: MakeApp, browse: Browse) -> None:
    """A taken email gets the very same answer as a free one, and its password is kept."""
    browser = await browse(make_app(registration="open"))
    await add_user(browser.core, "taken@example.com")
    answers = []
    for email in ("taken@example.com", "free@example.com"):
        response = await browser.post("/register", sign_up(email, OTHER_PASSWORD))
        answers.append(
            (
                response.status,
                response.headers.get("Location"),
                response.headers.get("Set-Cookie"),
                await response.read(),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][:3] == (303, "/login?registered=1", None)
    kept = await browser.post("/login", {"email": "taken@example.com", "password": PASSWORD})
    assert kept.status == 303


async def test_sign_up_form_errors(make_app: MakeApp, browse: Browse) -> None:
    """A short password or a mismatch re-shows the form with the message by the field."""
    browser = await browse(make_app(registration="open"))
    short = await browser.post("/register", sign_up("new@example.com", "short"))
    assert short.status == 422
    assert 'id="password-error">Password must be 10 to 1024 characters.' in await short.text()
    mismatch = {**sign_up("new@example.com"), "confirm_password": "something else entirely"}
    response = await browser.post("/register", mismatch)
    assert response.status == 422
    assert 'id="confirm_password-error"' in await response.text()
    assert await browser.core.users.count() == 0


async def test_closed_instances_admit_command_line_users_only(
    make_app: MakeApp, browse: Browse
) -> None:
    """Closed: no sign-up and no invites, but a user made by the CLI signs in."""
    browser = await browse(make_app(registration="closed"))
    await add_user(browser.core, "cli@example.com", is_admin=True)
    await browser.login("cli@example.com")
    assert "Invite someone" not in await browser.page("/dashboard/settings")
    refused = await browser.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
    assert refused.status == 403


@pytest.mark.parametrize(
    "email",
    [
        "ifttt-endpoint-tests@staterelay.invalid",
        "someone@printer.local.test",
        "x@home.example",
        "admin@Box.LOCALHOST",
    ],
)
async def test_sign_up_refuses_reserved_domains(
    make_app: MakeApp, browse: Browse, email: str
) -> None:
    """Nothing can be delivered under .invalid, .test, .example or .localhost, and StateRelay's
    own accounts live there: nobody can register one, on the open sign-up page either."""
    browser = await browse(make_app(registration="open"))
    response = await browser.post("/register", sign_up(email))
    assert response.status == 422
    assert "nothing can be delivered there" in await response.text()
    assert await browser.core.users.count() == 0
