"""Sign-in and sign-out: fresh session ids, timeouts, safe redirects, enumeration, throttling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from yarl import URL

from tests.web.support import (
    OTHER_PASSWORD,
    PASSWORD,
    Browser,
    FakeClock,
    add_user,
)

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]
COOKIE = "sr_session"


async def test_login_page_and_success_redirect(make_app: MakeApp, browse: Browse) -> None:
    """The form signs in and goes to the start page by default."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    page = await browser.page("/login")
    assert '<label for="email">Email</label>' in page
    assert 'autocomplete="current-password"' in page
    response = await browser.login("alice@example.com")
    assert response.headers["Location"] == "/"
    assert await browser.signed_in_as() == "alice@example.com"


async def test_login_issues_a_new_session_id(make_app: MakeApp, browse: Browse) -> None:
    """Checklist 15: a session cookie planted before sign-in is never the one used after it."""
    app = make_app()
    attacker = await browse(app)
    victim = await browse(app)
    await add_user(attacker.core, "alice@example.com")
    await add_user(attacker.core, "mallory@example.com")
    chosen = "A" * 43  # a value the attacker made up: it matches no session
    victim.set_cookie(COOKIE, chosen)
    await victim.login("alice@example.com")
    assert victim.cookie(COOKIE) not in (None, chosen)
    await victim.post("/logout", {}, form_page="/dashboard/settings")
    await attacker.login("mallory@example.com")
    planted = attacker.cookie(COOKIE)
    assert planted is not None
    victim.set_cookie(COOKIE, planted)
    assert await victim.signed_in_as() == "mallory@example.com"
    await victim.login("alice@example.com")
    fresh = victim.cookie(COOKIE)
    assert fresh is not None
    assert fresh != planted
    assert await victim.signed_in_as() == "alice@example.com"
    # The planted session was ended at sign-in, so the attacker's copy is dead too.
    assert await attacker.signed_in_as() is None


async def test_signing_in_again_replaces_the_session(make_app: MakeApp, browse: Browse) -> None:
    """A second sign-in in the same browser gets a new id; the old cookie stops working."""
    app = make_app()
    browser = await browse(app)
    await add_user(browser.core, "alice@example.com")
    await browser.login("alice@example.com")
    old = browser.cookie(COOKIE)
    assert old is not None
    response = await browser.post(
        "/login",
        {"email": "alice@example.com", "password": PASSWORD},
        form_page="/dashboard/settings",
    )
    assert response.status == 303
    new = browser.cookie(COOKIE)
    assert new is not None
    assert new != old
    other = await browse(app)
    other.set_cookie(COOKIE, old)
    assert await other.signed_in_as() is None


async def test_logout_invalidates_the_old_session_id(make_app: MakeApp, browse: Browse) -> None:
    """Checklist 15: after sign-out the old cookie value is rejected by the server."""
    app = make_app()
    browser = await browse(app)
    await add_user(browser.core, "alice@example.com")
    await browser.login("alice@example.com")
    old = browser.cookie(COOKIE)
    assert old is not None
    response = await browser.post("/logout", {}, form_page="/dashboard/settings")
    assert response.status == 303
    assert response.headers["Location"] == "/"
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert browser.cookie(COOKIE) is None
    replay = await browse(app)
    replay.set_cookie(COOKIE, old)
    assert await replay.signed_in_as() is None
    assert await browser.core.sessions.resolve(old) is None


async def test_idle_sessions_sign_out(make_app: MakeApp, browse: Browse, clock: FakeClock) -> None:
    """Unused for session_idle_hours, the session ends and its cookie is cleared."""
    browser = await browse(make_app(session_idle_hours=1.0))
    await add_user(browser.core, "alice@example.com")
    await browser.login("alice@example.com")
    clock.advance(3599)
    assert await browser.signed_in_as() == "alice@example.com"
    clock.advance(3600)
    response = await browser.get("/account")
    assert response.status == 303
    assert 'sr_session=""' in response.headers["Set-Cookie"]
    assert browser.cookie(COOKIE) is None


async def test_sessions_end_at_the_absolute_limit(
    make_app: MakeApp, browse: Browse, clock: FakeClock
) -> None:
    """However busy, a session ends session_absolute_days after sign-in."""
    browser = await browse(make_app(session_absolute_days=1.0, session_idle_hours=72.0))
    await add_user(browser.core, "alice@example.com")
    await browser.login("alice@example.com")
    for _ in range(23):
        clock.advance(3600)
        assert await browser.signed_in_as() == "alice@example.com"
    clock.advance(3600)
    assert await browser.signed_in_as() is None


async def test_signed_out_visitors_are_sent_to_login_and_back(
    make_app: MakeApp, browse: Browse
) -> None:
    """/account redirects to /login?next=/account, and signing in returns there."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    response = await browser.get("/account?tab=1")
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert (location.path, dict(location.query)) == ("/login", {"next": "/account?tab=1"})
    page = await browser.page("/login?next=%2Faccount%3Ftab%3D1")
    assert 'name="next" value="/account?tab=1"' in page
    signed = await browser.post(
        "/login",
        {"email": "alice@example.com", "password": PASSWORD, "next": "/account?tab=1"},
        form_page="/login",
    )
    assert signed.headers["Location"] == "/account?tab=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "account",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
async def test_next_never_leaves_the_site(make_app: MakeApp, browse: Browse, target: str) -> None:
    """Anything but a local path sends the user to the start page."""
    browser = await browse(make_app())
    await add_user(browser.core, "alice@example.com")
    response = await browser.post(
        "/login",
        {"email": "alice@example.com", "password": PASSWORD, "next": target},
        form_page="/login",
    )
    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_unknown_user_and_wrong_password_look_the_same(
    make_app: MakeApp, browse: Browse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checklist 17: same status and body (apart from the echoed email), and the same work:
    an unknown address is checked against a dummy argon2id hash of the same parameters, so
    it takes as long as a wrong password (counted, not timed: timings on a shared machine
    prove nothing either way)."""
    from argon2 import extract_parameters

    from staterelay.core import accounts, passwords

    browser = await browse(make_app(login_max_failures=1000))
    await add_user(browser.core, "alice@example.com")
    csrf = await browser.token_from("/login")
    verified: list[str] = []
    real_verify = accounts.verify_password

    def counting_verify(stored_hash: str, password: str) -> bool:
        verified.append(stored_hash)
        return real_verify(stored_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counting_verify)
    answers = {}
    work = {}
    for email in ("alice@example.com", "nobody@example.com", "alice@example.com"):
        verified.clear()
        response = await browser.post(
            "/login", {"email": email, "password": OTHER_PASSWORD}, csrf=csrf
        )
        body = await response.text()
        answers[email] = (response.status, body.replace(email, "EMAIL"))
        (stored,) = verified  # exactly one argon2 verification per attempt
        work[email] = extract_parameters(stored)
    assert answers["alice@example.com"] == answers["nobody@example.com"]
    assert answers["alice@example.com"][0] == 422
    assert work["alice@example.com"] == work["nobody@example.com"]
    # ... and those of a password hashed today (the dummy is not a cheaper hash).
    assert work["nobody@example.com"] == extract_parameters(passwords.hash_password(PASSWORD))


async def test_failed_logins_lock_only_that_account(
    make_app: MakeApp, browse: Browse, clock: FakeClock
) -> None:
    """Checklist 18: after K failures the account gets 429 with Retry-After, even with the right
    password; another account signs in from the same address; the lock lifts in time."""
    k = 3
    browser = await browse(make_app(login_max_failures=k))
    await add_user(browser.core, "alice@example.com")
    await add_user(browser.core, "bob@example.com")
    for _ in range(k):
        failed = await browser.post(
            "/login", {"email": "alice@example.com", "password": OTHER_PASSWORD}
        )
        assert failed.status == 422
    locked = await browser.post("/login", {"email": "alice@example.com", "password": PASSWORD})
    assert locked.status == 429
    retry_after = int(locked.headers["Retry-After"])
    assert retry_after >= 1
    assert "Too many failed attempts" in await locked.text()
    assert browser.cookie(COOKIE) is None
    other = await browser.post("/login", {"email": "bob@example.com", "password": PASSWORD})
    assert other.status == 303
    await browser.post("/logout", {}, form_page="/dashboard/settings")
    clock.advance(retry_after)
    await browser.login("alice@example.com")
