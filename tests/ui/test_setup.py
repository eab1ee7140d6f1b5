"""First run: the one-time setup link logged at start-up creates the admin account."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from tests.web.support import PASSWORD, Browser, add_user, setup_links

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]


@pytest.fixture(autouse=True)
def _capture_setup_link(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="staterelay.ui")


def admin_form(token: str, email: str = "admin@example.com") -> dict[str, str]:
    """The setup form, filled in."""
    return {"token": token, "email": email, "password": PASSWORD, "confirm_password": PASSWORD}


async def test_setup_link_is_logged_once_and_creates_the_admin(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """One log line names the link; the form behind it makes a signed-in admin."""
    browser = await browse(make_app())
    ((link, token),) = setup_links(caplog.text)
    assert link == f"http://localhost:8080/setup?token={token}"
    assert sum("/setup?token=" in r.getMessage() for r in caplog.records) == 1
    page = await browser.page(f"/setup?token={token}")
    assert "Create the admin account" in page
    response = await browser.post("/setup", admin_form(token), form_page=f"/setup?token={token}")
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    assert await browser.signed_in_as() == "admin@example.com"
    admin = await browser.core.users.by_email("admin@example.com")
    assert admin.is_admin
    assert admin.tenant_id == (await browser.core.users.household()).id


async def test_a_wrong_setup_token_is_refused(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """Another token, a truncated one or none at all gets a 404 page and creates nobody."""
    browser = await browse(make_app())
    ((_, token),) = setup_links(caplog.text)
    for query in ("", "?token=", f"?token={token[:-1]}", "?token=" + "A" * 43):
        response = await browser.get(f"/setup{query}")
        assert response.status == 404, query
        assert response.content_type == "text/html"
    posted = await browser.post("/setup", admin_form(token[:-1] + "x"), form_page="/login")
    assert posted.status == 404
    assert await browser.core.users.count() == 0


async def test_the_setup_link_works_only_once(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """After the admin exists, the same link says it was used (410), for everyone."""
    app = make_app()
    first = await browse(app)
    ((_, token),) = setup_links(caplog.text)
    setup_page = f"/setup?token={token}"
    csrf = await first.token_from(setup_page)
    assert (await first.post("/setup", admin_form(token), csrf=csrf)).status == 303
    second = await browse(app)
    used = await second.get(setup_page)
    assert used.status == 410
    assert "This setup link has been used" in await used.text()
    again = await second.post("/setup", admin_form(token, "late@example.com"), form_page="/login")
    assert again.status == 410
    replay = await first.post(
        "/setup", admin_form(token, "late@example.com"), form_page="/dashboard/settings"
    )
    assert replay.status == 410
    assert await first.core.users.count() == 1


async def test_setup_form_errors_are_shown_next_to_their_fields(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """A mismatched confirmation or a bad email re-shows the form; the link still works."""
    browser = await browse(make_app())
    ((_, token),) = setup_links(caplog.text)
    setup_page = f"/setup?token={token}"
    mismatch = {**admin_form(token), "confirm_password": "something else entirely"}
    response = await browser.post("/setup", mismatch, form_page=setup_page)
    assert response.status == 422
    assert 'id="confirm_password-error">The two passwords are not the same.' in (
        await response.text()
    )
    bad_email = {**admin_form(token), "email": "not-an-email"}
    response = await browser.post("/setup", bad_email, form_page=setup_page)
    text = await response.text()
    assert response.status == 422
    assert 'id="email-error">Email is not a valid address.' in text
    assert 'value="not-an-email"' in text
    assert (await browser.post("/setup", admin_form(token), form_page=setup_page)).status == 303


async def test_a_restart_without_users_logs_a_fresh_link(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """Each start with no users makes a new link; the old one stops working."""
    first = await browse(make_app())
    await first.client.close()
    second = await browse(make_app())
    (_, old), (_, new) = setup_links(caplog.text)
    assert old != new
    assert (await second.get(f"/setup?token={old}")).status == 404
    assert (await second.get(f"/setup?token={new}")).status == 200


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_no_setup_link_outside_invite_mode(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """Open and closed instances never log a setup link."""
    await browse(make_app(registration=mode))
    assert setup_links(caplog.text) == []


async def test_no_setup_link_once_a_user_exists(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """A user made on the command line ends setup: no link at the next start, old one dead."""
    first = await browse(make_app())
    ((_, token),) = setup_links(caplog.text)
    await add_user(first.core, "cli@example.com", is_admin=True)
    assert (await first.get(f"/setup?token={token}")).status == 410
    await first.client.close()
    caplog.clear()
    await browse(make_app())
    assert setup_links(caplog.text) == []


async def test_an_out_of_date_setup_link_says_what_to_do(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture
) -> None:
    """A link from an earlier start (setup still to do) points at the latest log."""
    first = await browse(make_app())
    ((_, old),) = setup_links(caplog.text)
    await first.client.close()
    caplog.clear()
    second = await browse(make_app())
    ((_, new),) = setup_links(caplog.text)
    assert new != old
    stale = await second.get(f"/setup?token={old}")
    assert stale.status == 404
    text = await stale.text()
    assert "This setup link is out of date" in text
    assert "latest start" in text
