"""The account page: password change, sessions, invites; hashes upgraded on sign-in."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from argon2 import PasswordHasher

from staterelay.core.records import User
from staterelay.ui.account import describe_agent
from tests.web.support import OTHER_PASSWORD, PASSWORD, Browser, add_user

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]
INVITE_LINK = re.compile(r'value="(http://localhost:8080/invite/([^"]+))"')


def password_form(current: str, new: str, confirm: str | None = None) -> dict[str, str]:
    """The change-password form, filled in."""
    return {
        "current_password": current,
        "new_password": new,
        "confirm_new_password": new if confirm is None else confirm,
    }


async def test_password_change_signs_out_other_sessions(make_app: MakeApp, browse: Browse) -> None:
    """This browser stays in, the other is out, and only the new password works."""
    app = make_app()
    here = await browse(app)
    there = await browse(app)
    await add_user(here.core, "alice@example.com")
    await here.login("alice@example.com")
    await there.login("alice@example.com")
    response = await here.post(
        "/dashboard/settings/password",
        password_form(PASSWORD, OTHER_PASSWORD),
        form_page="/dashboard/settings",
    )
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard/settings?done=password"
    assert "Every other session was signed out." in await here.page(
        "/dashboard/settings?done=password"
    )
    assert await there.signed_in_as() is None
    wrong = await there.post("/login", {"email": "alice@example.com", "password": PASSWORD})
    assert wrong.status == 422
    await there.login("alice@example.com", OTHER_PASSWORD)


async def test_password_change_errors_sit_next_to_their_fields(
    make_app: MakeApp, browse: Browse
) -> None:
    """Mismatch, wrong current password and a short new one each name their field."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    await browser.login("alice@example.com")
    cases = {
        "confirm_new_password": password_form(PASSWORD, OTHER_PASSWORD, "not the same thing"),
        "current_password": password_form("not my password", OTHER_PASSWORD),
        "new_password": password_form(PASSWORD, "short"),
    }
    for field, form in cases.items():
        response = await browser.post(
            "/dashboard/settings/password", form, form_page="/dashboard/settings"
        )
        text = await response.text()
        assert response.status == 422, field
        assert f'id="{field}-error"' in text, field
        assert f'id="{field}" name="{field}" type="password"' in text
        assert 'aria-invalid="true"' in text
    await browser.login("alice@example.com", PASSWORD)


async def test_weaker_hash_is_upgraded_at_login(make_app: MakeApp, browse: Browse) -> None:
    """Checklist 19: an old, weaker argon2 hash is replaced by a $argon2id$ m=19456,t=2 one."""
    browser = await browse(make_app())
    core = browser.core
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    household = await core.users.household()
    await core.store.create_user(
        User(
            id="usr_old",
            tenant_id=household.id,
            email="old@example.com",
            is_admin=False,
            created_at=0.0,
            password_hash=weak,
        )
    )
    await browser.login("old@example.com")
    stored = (await core.users.get(household.id, "usr_old")).password_hash
    assert stored is not None
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PasswordHasher().verify(stored, PASSWORD)


async def test_sessions_are_listed_and_can_be_signed_out(make_app: MakeApp, browse: Browse) -> None:
    """The page lists both browsers; one signs the other out, then itself."""
    app = make_app()
    here = await browse(app)
    there = await browse(app)
    await add_user(here.core, "alice@example.com")
    await here.login("alice@example.com")
    await there.login("alice@example.com")
    page = await here.page("/dashboard/settings")
    ids = re.findall(r'action="/dashboard/settings/sessions/(ses_[^/]+)/revoke"', page)
    assert len(ids) == 2
    assert page.count("This browser") == 1
    mine = here.core.sessions
    here_session = await mine.resolve(here.cookie("sr_session") or "")
    assert here_session is not None
    (other_id,) = [i for i in ids if i != here_session.session_id]
    response = await here.post(
        f"/dashboard/settings/sessions/{other_id}/revoke", {}, form_page="/dashboard/settings"
    )
    assert response.status == 303
    assert await there.signed_in_as() is None
    assert await here.signed_in_as() == "alice@example.com"
    gone = await here.post(
        f"/dashboard/settings/sessions/{other_id}/revoke", {}, form_page="/dashboard/settings"
    )
    assert gone.status == 404
    own = await here.post(
        f"/dashboard/settings/sessions/{here_session.session_id}/revoke",
        {},
        form_page="/dashboard/settings",
    )
    assert own.status == 303
    assert own.headers["Location"] == "/login"
    assert await here.signed_in_as() is None


async def test_invite_flow(make_app: MakeApp, browse: Browse) -> None:
    """An admin's link is shown once; the invitee joins the admin's tenant, once."""
    app = make_app()
    admin = await browse(app)
    admin_user = await add_user(admin.core, "admin@example.com", is_admin=True)
    await admin.login("admin@example.com")
    made = await admin.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
    assert made.status == 200
    ((link, token),) = INVITE_LINK.findall(await made.text())
    assert token not in await admin.page("/dashboard/settings")
    assert "Pending invites" in await admin.page("/dashboard/settings")

    guest = await browse(app)
    assert "You are invited" in await guest.page(f"/invite/{token}")
    fields = {"email": "guest@example.com", "password": PASSWORD, "confirm_password": PASSWORD}
    joined = await guest.post(f"/invite/{token}", fields)
    assert joined.status == 303
    assert joined.headers["Location"] == "/dashboard"
    assert await guest.signed_in_as() == "guest@example.com"
    member = await guest.core.users.by_email("guest@example.com")
    assert (member.tenant_id, member.is_admin) == (admin_user.tenant_id, False)

    late = await browse(app)
    used = await late.get(f"/invite/{token}")
    assert used.status == 410
    assert "This invite has been used" in await used.text()
    assert link.endswith(token)


async def test_members_cannot_invite(make_app: MakeApp, browse: Browse) -> None:
    """No invite section for a member, and the POST is refused."""
    browser = await browse(make_app())
    await add_user(browser.core, "member@example.com")
    await browser.login("member@example.com")
    assert "Invite someone" not in await browser.page("/dashboard/settings")
    refused = await browser.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
    assert refused.status == 403
    assert refused.content_type == "text/html"


async def test_invite_with_a_taken_email_says_so_to_the_invitee(
    make_app: MakeApp, browse: Browse
) -> None:
    """Only an invited person learns that an email is taken; the invite stays usable."""
    app = make_app()
    admin = await browse(app)
    await add_user(admin.core, "admin@example.com", is_admin=True)
    await admin.login("admin@example.com")
    ((_, token),) = INVITE_LINK.findall(
        await (
            await admin.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
        ).text()
    )
    guest = await browse(app)
    taken = {"email": "ADMIN@example.com", "password": PASSWORD, "confirm_password": PASSWORD}
    response = await guest.post(f"/invite/{token}", taken)
    assert response.status == 422
    assert 'id="email-error">A user with this email exists.' in await response.text()
    assert (await guest.get(f"/invite/{token}")).status == 200


async def test_withdrawn_invite_links_are_dead(make_app: MakeApp, browse: Browse) -> None:
    """Withdrawing a pending invite makes its link a 404."""
    app = make_app()
    admin = await browse(app)
    await add_user(admin.core, "admin@example.com", is_admin=True)
    await admin.login("admin@example.com")
    made = await (
        await admin.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
    ).text()
    ((_, token),) = INVITE_LINK.findall(made)
    (invite_id,) = re.findall(r'action="/dashboard/settings/invites/(inv_[^/]+)/revoke"', made)
    response = await admin.post(
        f"/dashboard/settings/invites/{invite_id}/revoke", {}, form_page="/dashboard/settings"
    )
    assert response.headers["Location"] == "/dashboard/settings?done=invite"
    assert (await admin.get(f"/invite/{token}")).status == 404


@pytest.mark.parametrize(
    ("agent", "shown"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Linux",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        ("", "Unknown browser"),
        ("Python/3.11 aiohttp/3.14.5", "Python/3.11 aiohttp/3.14.5"),
    ],
)
def test_sessions_are_named_by_browser_and_system(agent: str, shown: str) -> None:
    """The session list names a browser the way its owner would."""
    assert describe_agent(agent) == shown
