"""Per-request web state: the resolved session, cookie names and the pre-session CSRF nonce."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.core import Core
from staterelay.core.sessions import SignedIn, plausible_secret

SESSION_COOKIE: Final = "sr_session"
SECURE_SESSION_COOKIE: Final = "__Host-sr_session"
NONCE_COOKIE: Final = "sr_csrf"
SECURE_NONCE_COOKIE: Final = "__Host-sr_csrf"
NONCE_MAX_AGE: Final = 2 * 3600  # a sign-in form left open longer than this must be reloaded


@dataclass
class RequestState:
    """What the web layer learned about one request's browser."""

    resolved: bool = False
    signed_in: SignedIn | None = None
    stale_cookie: bool = False  # a session cookie came in that matches no live session
    cookie_written: bool = False  # the handler set or cleared the session cookie
    new_nonce: str | None = None  # a pre-session nonce this request made up
    nonce_written: bool = False


STATE_KEY: Final = web.RequestKey("staterelay.browser.state", RequestState)


def state_of(request: web.Request) -> RequestState:
    """This request's state, created (unresolved) on first use."""
    state = request.get(STATE_KEY)
    if state is None:
        state = RequestState()
        request[STATE_KEY] = state
    return state


def core_of(request: web.Request) -> Core:
    """The application's Core, from the root app or any sub-app."""
    return request.config_dict[CORE_KEY]


def secure_cookies(request: web.Request) -> bool:
    """True when the public URL is https: cookies get ``Secure`` and the ``__Host-`` prefix."""
    return core_of(request).config.public_url.startswith("https://")


def session_cookie_name(request: web.Request) -> str:
    """The session cookie's name for this instance."""
    return SECURE_SESSION_COOKIE if secure_cookies(request) else SESSION_COOKIE


def nonce_cookie_name(request: web.Request) -> str:
    """The pre-session CSRF cookie's name for this instance."""
    return SECURE_NONCE_COOKIE if secure_cookies(request) else NONCE_COOKIE


def cookie_nonce(request: web.Request) -> str | None:
    """The pre-session nonce the browser sent, when it looks like one."""
    value = request.cookies.get(nonce_cookie_name(request))
    return value if value is not None and plausible_secret(value) else None


def form_token(request: web.Request) -> str:
    """The CSRF token for a form on this response (sync; the session must be resolved)."""
    state = state_of(request)
    if state.signed_in is not None:
        return state.signed_in.csrf_token
    nonce = state.new_nonce or cookie_nonce(request)
    if nonce is None:
        nonce = state.new_nonce = secrets.token_urlsafe(32)
    return core_of(request).sessions.anonymous_csrf_token(nonce)


def deliver_nonce(request: web.Request, response: web.StreamResponse) -> None:
    """Set the pre-session nonce cookie on ``response`` if this request made one up."""
    state = state_of(request)
    if state.new_nonce is None or state.nonce_written or response.prepared:
        return
    secure = secure_cookies(request)
    response.set_cookie(
        nonce_cookie_name(request),
        state.new_nonce,
        max_age=NONCE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=True if secure else None,
    )
    state.nonce_written = True


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, secret: str, max_age: float
) -> None:
    """Put a session secret in the session cookie (HttpOnly, SameSite=Lax, Path=/)."""
    response.set_cookie(
        session_cookie_name(request),
        secret,
        max_age=int(max_age),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=True if secure_cookies(request) else None,
    )
    state_of(request).cookie_written = True


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """Tell the browser to drop the session cookie."""
    response.del_cookie(
        session_cookie_name(request),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=True if secure_cookies(request) else None,
    )
    state_of(request).cookie_written = True
