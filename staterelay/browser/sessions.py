"""Who is signed in: resolve the session cookie, start and end sessions, redirect to sign-in."""

from __future__ import annotations

import functools
import ipaddress
import logging
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.browser.addresses import reachable_urls
from staterelay.browser.state import (
    clear_session_cookie,
    core_of,
    session_cookie_name,
    set_session_cookie,
    state_of,
)
from staterelay.core.records import User
from staterelay.core.sessions import SignedIn

_LOGGER = logging.getLogger(__name__)

NEXT_MAX = 2000
DEFAULT_NEXT = "/"


async def current_user(request: web.Request) -> SignedIn | None:
    """The signed-in user of this request, resolved once per request; None when anonymous."""
    state = state_of(request)
    if not state.resolved:
        secret = request.cookies.get(session_cookie_name(request))
        if secret:
            state.signed_in = await core_of(request).sessions.resolve(secret)
            state.stale_cookie = state.signed_in is None
        state.resolved = True
    return state.signed_in


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    """A 303 to ``/login?next=<this path and query>``, for the caller to raise."""
    return web.HTTPSeeOther(location="/login?" + urlencode({"next": safe_next(request.path_qs)}))


def safe_next(value: object, default: str = DEFAULT_NEXT) -> str:
    """``value`` when it is a path on this site, else ``default`` (no open redirects)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > NEXT_MAX:
        return default
    if value.startswith(("//", "/\\")) or "\\" in value:
        return default
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def link_base(request: web.Request) -> str:
    """The base URL of links StateRelay hands out (invites, reset links).

    The public URL, unless the request came to one of this machine's own network addresses
    while no public URL is set (a Pi on the LAN): then that address, which the person can
    open. Any other ``Host`` is ignored, so a forged one cannot aim a mailed link elsewhere.
    """
    settings = request.config_dict[SETTINGS_KEY]
    known = reachable_urls(settings)
    origin = f"{request.scheme}://{request.host}"
    return origin if origin in known else settings.public_url


def from_trusted_proxy(request: web.Request) -> bool:
    """True when the socket peer is inside ``server.trusted_proxies``."""
    networks = _trusted_networks(request.config_dict[SETTINGS_KEY].server.trusted_proxies)
    return _inside(request.remote or "", networks)


def forwarded_value(request: web.Request, header: str) -> str | None:
    """The right-most value of an ``X-Forwarded-*`` header (what the nearest proxy set)."""
    values = ",".join(request.headers.getall(header, []))
    parts = [part.strip() for part in values.split(",") if part.strip()]
    return parts[-1] if parts else None


def client_ip(request: web.Request) -> str:
    """The client's address: the socket peer, or what a trusted proxy says it forwarded.

    Only a peer inside ``server.trusted_proxies`` may name the client, and then the
    right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy counts, so a
    client cannot choose its own address by sending the header.
    """
    peer = request.remote or "unknown"
    networks = _trusted_networks(request.config_dict[SETTINGS_KEY].server.trusted_proxies)
    if not _inside(peer, networks):
        return peer
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
    for candidate in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        if not _inside(candidate, networks):
            return candidate if _is_address(candidate) else peer
    return peer


@functools.cache
def _trusted_networks(
    networks: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _inside(text: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address.version == n.version and address in n for n in networks)


async def start_session(request: web.Request, response: web.StreamResponse, user: User) -> SignedIn:
    """Sign ``user`` in with a brand-new session id; its cookie goes on ``response``."""
    core = core_of(request)
    previous = await current_user(request)
    if previous is not None:
        # A fresh id at every sign-in: whatever session the browser had is ended.
        await core.sessions.end(previous)
    secret, signed_in = await core.sessions.create(
        user, ip=client_ip(request), user_agent=request.headers.get("User-Agent", "")
    )
    set_session_cookie(request, response, secret, core.sessions.absolute_seconds)
    state = state_of(request)
    state.signed_in = signed_in
    state.stale_cookie = False
    return signed_in


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Sign out: delete the session server-side and clear its cookie on ``response``."""
    signed_in = await current_user(request)
    if signed_in is not None:
        await core_of(request).sessions.end(signed_in)
    clear_session_cookie(request, response)
    state = state_of(request)
    state.signed_in = None
    state.stale_cookie = False
