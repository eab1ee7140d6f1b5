"""Nothing secret is stored or logged: passwords, cookie secrets, invite and setup tokens."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from staterelay.settings import Settings
from tests.web.support import Browser, setup_links

MakeApp = Callable[..., web.Application]
Browse = Callable[[web.Application], Awaitable[Browser]]

FIRST = "first passphrase of the admin"
SECOND = "second passphrase of the admin"
GUEST = "passphrase of the invited guest"
WRONG = "a wrong guess at the passphrase"


async def test_no_secret_reaches_the_database_or_the_logs(
    make_app: MakeApp, browse: Browse, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    """After setup, sign-in, a failed sign-in, a password change and an invite, the database
    files hold no password, cookie secret or token, and the logs no password or cookie."""
    caplog.set_level(logging.DEBUG)
    app = make_app()
    admin = await browse(app)
    ((_, setup_token),) = setup_links(caplog.text)
    fields = {"email": "admin@example.com", "password": FIRST, "confirm_password": FIRST}
    response = await admin.post(
        "/setup", {**fields, "token": setup_token}, form_page=f"/setup?token={setup_token}"
    )
    assert response.status == 303
    first_cookie = admin.cookie("sr_session")
    failed = await (await browse(app)).post(
        "/login", {"email": "admin@example.com", "password": WRONG}
    )
    assert failed.status == 422
    changed = await admin.post(
        "/dashboard/settings/password",
        {"current_password": FIRST, "new_password": SECOND, "confirm_new_password": SECOND},
        form_page="/dashboard/settings",
    )
    assert changed.status == 303
    invite_page = await (
        await admin.post("/dashboard/settings/invites", {}, form_page="/dashboard/settings")
    ).text()
    invite_match = re.search(r"/invite/([A-Za-z0-9_-]{20,})", invite_page)
    assert invite_match is not None
    invite_token = invite_match.group(1)
    guest = await browse(app)
    joined = await guest.post(
        f"/invite/{invite_token}",
        {"email": "guest@example.com", "password": GUEST, "confirm_password": GUEST},
    )
    assert joined.status == 303
    await admin.login("admin@example.com", SECOND)
    cookies = [first_cookie, guest.cookie("sr_session"), admin.cookie("sr_session")]
    assert all(cookies)

    stored = b"".join(path.read_bytes() for path in sorted(settings.data_dir.iterdir()))
    assert b"argon2id" in stored  # the scan does see the users table
    for secret in [FIRST, SECOND, GUEST, WRONG, setup_token, invite_token, *cookies]:
        assert secret is not None
        assert secret.encode() not in stored, secret
    # aiohttp's own access log exists only under the test server: `serve` turns it off and
    # logs route templates (/invite/{token}) on staterelay.access instead.
    logged = "\n".join(
        caplog.handler.format(record)
        for record in caplog.records
        if record.name != "aiohttp.access"
    )
    assert "POST /invite/{token} 303" in logged
    for secret in [FIRST, SECOND, GUEST, WRONG, invite_token, *cookies]:
        assert secret is not None
        assert secret not in logged, secret
