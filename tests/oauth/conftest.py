"""OAuth test fixtures: a real server on a known loopback port, configured Alexa and IFTTT
clients, a movable clock, and a browser that signs in and answers the consent page."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.settings import OAuthClientSettings, OAuthSettings, Settings
from tests.processes import free_port

Client = TestClient[web.Request, web.Application]

PASSWORD = "correct horse battery staple"
EMAIL = "alice@example.com"
VENDOR = "M2ABCDEF"
ALEXA_ID = "alexa-skill"
ALEXA_SECRET = "alexa-secret-0123456789abcdef"
ALEXA_URIS = (
    f"https://pitangui.amazon.com/api/skill/link/{VENDOR}",
    f"https://layla.amazon.com/api/skill/link/{VENDOR}",
    f"https://alexa.amazon.co.jp/api/skill/link/{VENDOR}",
)
ALEXA_URI = ALEXA_URIS[0]
IFTTT_ID = "ifttt-service"
IFTTT_SECRET = "ifttt-secret-0123456789abcdef"
IFTTT_URI = "https://ifttt.com/channels/staterelay/authorize"


class Clock:
    """The app's clock, moved by hand; starts at the real time so sessions behave."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A movable clock."""
    import time

    return Clock(time.time())


@pytest.fixture
def port() -> int:
    """The port the server will listen on (known before the app is built)."""
    return free_port()


@pytest.fixture
def oauth_settings(settings: Settings, port: int) -> Settings:
    """Settings with public_url http://localhost:<port> and the two linking clients."""
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(
            settings.server, port=port, public_url=f"http://localhost:{port}"
        ),
        oauth=OAuthSettings(
            clients=(
                OAuthClientSettings(
                    id=ALEXA_ID,
                    secret=ALEXA_SECRET,
                    redirect_uris=ALEXA_URIS,
                    token_endpoint_auth_method="client_secret_basic",
                    scopes=("devices",),
                    name="Amazon Alexa",
                ),
                OAuthClientSettings(
                    id=IFTTT_ID,
                    secret=IFTTT_SECRET,
                    redirect_uris=(IFTTT_URI,),
                    token_endpoint_auth_method="client_secret_post",
                    scopes=("ifttt",),
                    name="IFTTT",
                ),
            )
        ),
    )


@pytest.fixture
def oauth_app(oauth_settings: Settings, clock: Clock) -> web.Application:
    """The whole app with the injected clock."""
    return create_app(oauth_settings, clock=clock)


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Any], oauth_app: web.Application, port: int
) -> TestServer:
    """The app listening on 127.0.0.1:<port>."""
    test_server: TestServer = await aiohttp_server(oauth_app, port=port)
    return test_server


@pytest.fixture
async def browser(aiohttp_client: Callable[..., Any], server: TestServer) -> Client:
    """A client with a cookie jar, as a browser would be."""
    test_client: Client = await aiohttp_client(server)
    return test_client


@pytest.fixture
def core(oauth_app: web.Application, server: TestServer) -> Core:
    """The running app's core."""
    return oauth_app[CORE_KEY]


@pytest.fixture
def base_url(port: int) -> str:
    """Where token requests go (loopback address; the issuer says localhost)."""
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def user(core: Core) -> Any:
    """The user who links."""
    return await core.users.create(email=EMAIL, password=PASSWORD)


def form_value(html: str, name: str) -> str:
    """The value of the named hidden input of a page."""
    match = re.search(rf'name="{re.escape(name)}"\s+value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"\s+name="{re.escape(name)}"', html
    )
    assert match, f"no {name} field in page"
    return unescape(match.group(1))


def form_action(html: str) -> str:
    """The action of the page's POST form."""
    match = re.search(r'<form method="post" action="(/oauth/authorize[^"]*)"', html)
    assert match, "no form in page"
    return unescape(match.group(1))


async def sign_in(browser: Client, next_path: str = "/") -> None:
    """Sign in through the login form."""
    page = await browser.get("/login", params={"next": next_path})
    assert page.status == 200, await page.text()
    token = form_value(await page.text(), "csrf_token")
    answer = await browser.post(
        "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token, "next": next_path},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()


def authorize_path(
    client_id: str = ALEXA_ID,
    redirect_uri: str = ALEXA_URI,
    *,
    extra: list[tuple[str, str]] | None = None,
    **params: str,
) -> str:
    """``/oauth/authorize?...`` as a client would build it."""
    query: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", "st-123"),
    ]
    query += list(params.items())
    query += extra or []
    return "/oauth/authorize?" + urlencode(query)


async def consent(browser: Client, path: str, decision: str = "allow") -> str:
    """Open the consent page of ``path`` (signed in) and answer it; returns the Location."""
    page = await browser.get(path, allow_redirects=False)
    assert page.status == 200, await page.text()
    html = await page.text()
    answer = await browser.post(
        form_action(html),
        data={"csrf_token": form_value(html, "csrf_token"), "decision": decision},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()
    return answer.headers["Location"]


def redirect_params(location: str) -> dict[str, str]:
    """The query parameters of a redirect back to the client."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def get_code(browser: Client, path: str | None = None) -> str:
    """A fresh code for the Alexa client (the browser must be signed in)."""
    location = await consent(browser, path or authorize_path())
    params = redirect_params(location)
    assert params["state"] == "st-123"
    return params["code"]
