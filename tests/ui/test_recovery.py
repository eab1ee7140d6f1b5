"""Account recovery: "Forgot password?" by e-mail (an aiosmtpd server on loopback), reset
links an admin makes, invites by e-mail, and what happens without e-mail."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.settings import EmailSettings, Settings, SmtpSettings
from tests.processes import free_port
from tests.ui.homes import Browse, sign_in_home
from tests.web.support import OTHER_PASSWORD, PASSWORD, Browser, FakeClock, add_user, build_app

RESET_LINK = re.compile(r"(http://\S+/reset/(srp_[A-Za-z0-9_-]+))")
INVITE_LINK = re.compile(r"(http://\S+/invite/(\S+))")
SENT = "If an account uses that address, a reset link is on its way to it."


class Inbox:
    """An SMTP server on loopback that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's hook: keep the message."""
        content = envelope.original_content or b""
        with self._lock:
            self.messages.append(message_from_bytes(content))
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def bodies(self) -> list[str]:
        """The text of every message, in order."""
        with self._lock:
            return [str(m.get_payload(decode=True).decode()) for m in self.messages]  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def quiet_test_servers() -> Iterator[None]:
    """Silence the loggers of the test's own servers, which print what StateRelay never logs:
    aiohttp's access log (raw paths, reset links included; `serve` turns it off and logs
    the route, /reset/{token}, on staterelay.access) and aiosmtpd's copy of each message."""
    loggers = [logging.getLogger("aiohttp.access"), logging.getLogger("mail.log")]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A running SMTP server and its port."""
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def with_email(settings: Settings, port: int) -> Settings:
    """``settings`` sending mail to the loopback server, unencrypted."""
    return dataclasses.replace(
        settings,
        email=EmailSettings(
            from_address="StateRelay <staterelay@example.com>",
            smtp=SmtpSettings(host="127.0.0.1", port=port, security="none"),
        ),
    )


@pytest.fixture
def mail_app(settings: Settings, clock: FakeClock, inbox: tuple[Inbox, int]) -> web.Application:
    """The app with e-mail on."""
    return build_app(with_email(settings, inbox[1]), clock)


async def ask_for_link(browser: Browser, email: str) -> str:
    """Fill in "Forgot password?" and return the page that answers."""
    response = await browser.post("/forgot", {"email": email}, form_page="/forgot")
    assert response.status == 200
    return await response.text()


async def test_forgot_password_mails_a_link_that_works_once(
    mail_app: web.Application,
    browse: Browse,
    inbox: tuple[Inbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The link sets a new password, ends every session of the user, then is dead."""
    sam = await sign_in_home(browse, mail_app, "sam@example.com", is_admin=False)
    laptop = await browse(mail_app)
    await laptop.login("sam@example.com")
    stranger = await browse(mail_app)
    assert "Forgot password?" in await stranger.page("/login")
    assert SENT in await ask_for_link(stranger, "Sam@Example.com")
    core = sam.core
    await core.recovery.drain()
    (body,) = inbox[0].bodies()
    assert inbox[0].recipients == [["sam@example.com"]]
    assert inbox[0].messages[0]["Subject"] == "Reset your StateRelay password"
    ((link, token),) = RESET_LINK.findall(body)
    assert "30 minutes" in body
    path = link.split("://", 1)[1].split("/", 1)[1]
    database = (mail_app[SETTINGS_KEY].data_dir / "staterelay.db").read_bytes()
    assert token.encode() not in database
    fields = {"password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD}
    done = await stranger.post(f"/{path}", fields)
    assert (done.status, done.headers["Location"]) == (303, "/login?reset=1")
    assert "every session signed out" in await stranger.page("/login?reset=1")
    assert await sam.browser.signed_in_as() is None
    assert await laptop.signed_in_as() is None
    refused = await stranger.post("/login", {"email": "sam@example.com", "password": PASSWORD})
    assert refused.status == 422
    await stranger.login("sam@example.com", OTHER_PASSWORD)
    again = await browse(mail_app)
    used = await again.get(f"/{path}")
    assert used.status == 410
    assert "was used already" in await used.text()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /reset/{token} 303" in logged
    assert token not in logged


async def test_the_same_answer_whether_or_not_the_address_exists(
    mail_app: web.Application, browse: Browse, inbox: tuple[Inbox, int]
) -> None:
    """Unknown and known addresses read alike; only a known one gets mail."""
    browser = await browse(mail_app)
    await add_user(browser.core, "kim@example.com")
    known = await ask_for_link(browser, "kim@example.com")
    unknown = await ask_for_link(browser, "nobody@example.com")
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", known).replace("kim@example.com", "X") == strip.sub("", unknown).replace(
        "nobody@example.com", "X"
    )
    await browser.core.recovery.drain()
    assert inbox[0].recipients == [["kim@example.com"]]
    bad = await browser.post("/forgot", {"email": "not an address"}, form_page="/forgot")
    assert bad.status == 422
    text = await bad.text()
    assert "Enter the e-mail address you sign in with." in text
    assert 'value="not an address"' in text


async def test_links_expire_and_requests_are_throttled(
    mail_app: web.Application, browse: Browse, inbox: tuple[Inbox, int], clock: FakeClock
) -> None:
    """30 minutes, then the link explains it expired; 3 mails an hour per address."""
    browser = await browse(mail_app)
    await add_user(browser.core, "kim@example.com")
    for _ in range(5):
        assert SENT in await ask_for_link(browser, "kim@example.com")
    await browser.core.recovery.drain()
    assert len(inbox[0].messages) == 3
    ((link, _),) = RESET_LINK.findall(inbox[0].bodies()[0])
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]
    assert (await browser.get(path)).status == 200
    clock.advance(30 * 60 + 1)
    expired = await browser.get(path)
    assert expired.status == 410
    assert "has expired (links work for 30 minutes)" in await expired.text()
    clock.advance(3600)
    await ask_for_link(browser, "kim@example.com")
    await browser.core.recovery.drain()
    assert len(inbox[0].messages) == 4


async def test_an_admin_makes_a_reset_link_for_a_member(
    settings: Settings, clock: FakeClock, browse: Browse
) -> None:
    """Settings lists the household; the link is shown once and works once, without
    e-mail; a member cannot make one."""
    app = build_app(settings, clock)
    admin = await sign_in_home(browse, app, "sam@example.com")
    kim = await sign_in_home(browse, app, "kim@example.com", is_admin=False)
    page = await admin.browser.page("/dashboard/settings")
    assert "People in this household" in page
    assert "People in this household" not in await kim.browser.page("/dashboard/settings")
    made = await admin.post(f"/dashboard/settings/members/{kim.user.id}/reset")
    assert made.status == 200
    ((link, token),) = RESET_LINK.findall(await made.text())
    assert link.startswith("http://localhost:8080/reset/srp_")
    refused = await kim.post(f"/dashboard/settings/members/{admin.user.id}/reset")
    assert refused.status == 403
    fields = {"password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD}
    stranger = await browse(app)
    assert (
        await stranger.post(f"/reset/{token}", fields, form_page=f"/reset/{token}")
    ).status == 303
    assert await kim.browser.signed_in_as() is None
    await stranger.login("kim@example.com", OTHER_PASSWORD)


async def test_invites_can_be_emailed(
    mail_app: web.Application, browse: Browse, inbox: tuple[Inbox, int]
) -> None:
    """The admin types an address: the invite link goes there and still shows once."""
    admin = await sign_in_home(browse, mail_app, "sam@example.com")
    made = await admin.post("/dashboard/settings/invites", {"invite_email": "kim@example.com"})
    text = await made.text()
    assert "The invite was e-mailed to kim@example.com." in text
    (body,) = inbox[0].bodies()
    ((_, token),) = INVITE_LINK.findall(body)
    assert token in text
    assert "sam@example.com invites you" in body
    bad = await admin.post("/dashboard/settings/invites", {"invite_email": "kim at home"})
    assert bad.status == 422
    assert 'value="kim at home"' in await bad.text()


async def test_without_email_the_pages_say_what_to_do(
    settings: Settings, clock: FakeClock, browse: Browse
) -> None:
    """No "Forgot password?" link; /forgot explains the two other ways in."""
    browser = await browse(build_app(settings, clock))
    login = await browser.page("/login")
    assert 'href="/forgot"' not in login
    assert "Ask the person who runs this StateRelay for a reset link" in login
    forgot = await browser.get("/forgot")
    assert forgot.status == 404
    assert "staterelay user set-password" in await forgot.text()
    unknown = await browser.get("/reset/srp_" + "x" * 43)
    assert unknown.status == 404
    assert "is not known here" in await unknown.text()
