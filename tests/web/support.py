"""Helpers for browser-side tests: a settable clock, app builders and a form-filling browser."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core, CoreConfig, InProcessBus
from staterelay.core.records import User
from staterelay.settings import AccountsSettings, Settings
from staterelay.store import open_store

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "a different long passphrase"
INSTANCE_SECRET = b"s" * 32

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SETUP_LINK = re.compile(r"(\S+/setup\?token=(\S+))")

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def with_accounts(settings: Settings, public_url: str | None = None, **accounts: Any) -> Settings:
    """``settings`` with some ``accounts`` keys (and the public URL) replaced."""
    changed = dataclasses.replace(settings, accounts=AccountsSettings(**accounts))
    if public_url is not None:
        changed = dataclasses.replace(
            changed, server=dataclasses.replace(changed.server, public_url=public_url)
        )
    return changed


def build_app(settings: Settings, clock: FakeClock | None = None) -> web.Application:
    """The whole application, on ``clock`` when given."""
    if clock is None:
        return create_app(settings)
    return create_app(settings, clock=clock)


@contextlib.asynccontextmanager
async def open_core(
    path: Path, clock: FakeClock, *, secret: bytes = INSTANCE_SECRET, **accounts: Any
) -> AsyncIterator[Core]:
    """A Core on a fresh SQLite file, without the web app."""
    store = open_store(f"sqlite:///{path}")
    await store.open()
    core = Core(
        store,
        InProcessBus(),
        instance_secret=secret,
        clock=clock,
        config=CoreConfig(accounts=AccountsSettings(**accounts)),
    )
    try:
        yield core
    finally:
        await core.bus.close()
        await store.close()


async def add_user(
    core: Core, email: str, password: str = PASSWORD, *, is_admin: bool = False
) -> User:
    """A household user with a password."""
    return await core.users.create(email=email, password=password, is_admin=is_admin)


def setup_links(log_text: str) -> list[tuple[str, str]]:
    """(link, token) of every setup link in captured log text."""
    return [(m.group(1), m.group(2)) for m in _SETUP_LINK.finditer(log_text)]


def csrf_in(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _CSRF.search(html)
    assert match is not None, "no csrf_token field on the page"
    return match.group(1)


class Browser:
    """A test client that reads forms and keeps cookies, like a person with a browser."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def app(self) -> web.Application:
        """The application under test."""
        return self.client.app

    @property
    def core(self) -> Core:
        """The application's Core."""
        return self.client.app[CORE_KEY]

    async def get(self, path: str, **kwargs: Any) -> ClientResponse:
        """GET without following redirects."""
        return await self.client.get(path, allow_redirects=False, **kwargs)

    async def page(self, path: str) -> str:
        """The HTML of a page that must answer 200."""
        response = await self.get(path)
        text = await response.text()
        assert response.status == 200, (path, response.status, text[:500])
        return text

    async def token_from(self, path: str) -> str:
        """The CSRF token of the form on ``path``."""
        return csrf_in(await self.page(path))

    async def post(
        self,
        path: str,
        fields: Mapping[str, str],
        *,
        form_page: str | None = None,
        csrf: bool | str = True,
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        """POST a form; the CSRF token comes from ``form_page`` (default ``path``) if ``csrf``."""
        data = dict(fields)
        if isinstance(csrf, str):
            data["csrf_token"] = csrf
        elif csrf:
            data["csrf_token"] = await self.token_from(form_page or path)
        return await self.client.post(
            path, data=data, allow_redirects=False, headers=dict(headers or {})
        )

    async def login(self, email: str, password: str = PASSWORD) -> ClientResponse:
        """Sign in through the form (also when already signed in); asserts the 303."""
        form_page = "/login" if (await self.get("/login")).status == 200 else "/dashboard/settings"
        fields = {"email": email, "password": password}
        response = await self.post("/login", fields, form_page=form_page)
        assert response.status == 303, await response.text()
        return response

    def cookie(self, name: str) -> str | None:
        """The value of a cookie the browser would send to the app."""
        cookies = self.client.session.cookie_jar.filter_cookies(self.client.make_url("/"))
        morsel = cookies.get(name)
        return morsel.value if morsel is not None else None

    def set_cookie(self, name: str, value: str) -> None:
        """Plant a cookie (as an attacker or an old tab would)."""
        self.client.session.cookie_jar.update_cookies(
            {name: value}, response_url=self.client.make_url("/")
        )

    def forget_cookie(self, name: str) -> None:
        """Drop one cookie from the jar."""
        jar = self.client.session.cookie_jar
        kept = {
            morsel.key: morsel.value
            for morsel in jar
            if morsel.key != name and morsel["domain"] in ("", "127.0.0.1")
        }
        jar.clear()
        jar.update_cookies(kept, response_url=self.client.make_url("/"))

    async def signed_in_as(self) -> str | None:
        """The email the account page shows, or None when it redirects to sign-in."""
        response = await self.get("/dashboard/settings")
        if response.status == 303:
            assert response.headers["Location"].startswith("/login?next=")
            return None
        text = await response.text()
        match = re.search(r'<p class="lead">([^<]+) · ', text)
        assert match is not None, text[:500]
        return match.group(1)


# fixtures (imported by the conftest of tests/web and tests/ui) --------------------------------
@pytest.fixture
def clock() -> FakeClock:
    """The clock the app under test runs on."""
    return FakeClock()


@pytest.fixture
def make_app(settings: Settings, clock: FakeClock) -> Callable[..., web.Application]:
    """Build the app with some accounts settings (and public_url) changed, on ``clock``."""

    def make(public_url: str | None = None, **accounts: Any) -> web.Application:
        return build_app(with_accounts(settings, public_url, **accounts), clock)

    return make


@pytest.fixture
def browse(aiohttp_client: ClientFactory) -> Callable[[web.Application], Awaitable[Browser]]:
    """Start an app (once) and open a browser on it; call again for another browser."""
    clients: dict[int, Client] = {}

    async def open_browser(app: web.Application) -> Browser:
        first = clients.get(id(app))
        if first is None:
            clients[id(app)] = await aiohttp_client(app)
            return Browser(clients[id(app)])
        return Browser(await aiohttp_client(first.server))

    return open_browser
