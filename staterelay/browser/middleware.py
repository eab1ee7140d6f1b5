"""The HTML layer of every browser route: sessions, origin checks, security headers, error pages.

The request boundary runs it only on the surfaces the surfaces table marks ``html`` (the
browser-facing part of the URL space); JSON surfaces with error boundaries of their own
(``/api/``, ``/alexa/``, ``/ifttt/``) and the operations endpoints never enter it. Errors a
handler already answered as JSON stay JSON.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.browser.render import error_page, security_headers
from staterelay.browser.sessions import (
    current_user,
    forwarded_value,
    from_trusted_proxy,
    login_redirect,
)
from staterelay.browser.state import (
    clear_session_cookie,
    core_of,
    deliver_nonce,
    state_of,
)
from staterelay.core.errors import NotAuthenticated, StateRelayError
from staterelay.core.throttle import LoginThrottled
from staterelay.settings import HOST_ROLES, HostsSettings

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_TITLES: Final = {
    400: "Bad request",
    403: "Forbidden",
    404: "Page not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many attempts",
}
_MESSAGES: Final = {
    400: "The request could not be understood.",
    403: "You cannot do this.",
    404: "There is no page at this address.",
    405: "This page does not accept that kind of request.",
    413: "What was sent is larger than this server accepts.",
}


async def html_layer(
    request: web.Request, handler: Handler, *, session: bool = True
) -> web.StreamResponse:
    """``html_boundary`` around ``origin_check`` around ``session_middleware``, then ``handler``.

    The app's request boundary calls it for the surfaces marked ``html`` only, so JSON
    requests, the busy part of the URL space, never enter the HTML layer. Without
    ``session`` (static files) no session is resolved and no cookie set.
    """

    async def with_session(inner: web.Request) -> web.StreamResponse:
        return await session_middleware(inner, handler)

    async def checked(inner: web.Request) -> web.StreamResponse:
        return await origin_check(inner, with_session if session else handler)

    return await html_boundary(request, checked)


async def html_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn errors on HTML routes into pages and put security headers on every HTML answer."""
    try:
        response = await handler(request)
    except NotAuthenticated:
        raise login_redirect(request) from None
    except StateRelayError as error:
        response = error_page(request, error.status, error.title, _sentence(error.detail))
        if isinstance(error, LoginThrottled):
            response.headers["Retry-After"] = str(error.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400 or _chosen_body(exc):
            # Redirects, and error bodies a handler chose (an HTML page, JSON), stay as they are.
            harden(exc)
            raise
        response = _page_for_http_error(request, exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # a client that hung up mid-body is noted by the request boundary
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        response = error_page(
            request,
            500,
            "Something went wrong",
            "The server hit an unexpected error and logged it. Please try again.",
        )
    harden(response)
    return response


def html_error(
    request: web.Request, error: StateRelayError, headers: Mapping[str, str]
) -> web.Response:
    """An error the request boundary raised itself, as an error page (``ErrorRenderer``)."""
    page = error_page(
        request, error.status, error.title, _sentence(f"{error.title}: {error.detail}")
    )
    page.headers.update(headers)
    harden(page)
    return page


def harden(response: web.StreamResponse) -> None:
    """Add the security headers a handler did not set (only HTML gets the page headers)."""
    if response.prepared:
        return
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type == "text/html":
        for name, value in security_headers().items():
            response.headers.setdefault(name, value)


async def origin_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse unsafe requests whose ``Origin`` is present and not one of this instance's.

    Pages are served with ``Referrer-Policy: no-referrer``, and for such a page browsers send
    ``Origin: null`` with a form POST, even to the page's own origin. ``Sec-Fetch-Site``
    (which pages cannot set) then says whether the form was ours: ``same-origin`` passes.
    """
    if request.method in SAFE_METHODS:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(request, origin):
        return await handler(request)
    if origin == "null" and request.headers.get("Sec-Fetch-Site") == "same-origin":
        return await handler(request)
    public_url = core_of(request).config.public_url
    _LOGGER.warning("refused %s %s from origin %r", request.method, request.path, origin[:200])
    message = (
        f"This request came from a page of {origin[:200]}, but it was sent to "
        f"{request_origin(request) or 'an unknown address'} ({public_url} is this server's "
        "public URL). StateRelay only accepts forms and changes from its own pages. If a "
        "proxy sits in front of StateRelay, add its address to server.trusted_proxies so "
        "its X-Forwarded-Host and X-Forwarded-Proto headers count."
    )
    return refusal(request, 403, "Request from another site", message)


async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the session before the handler; afterwards set or clear the cookies it needs."""
    await current_user(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _finish_cookies(request, exc)
        raise
    _finish_cookies(request, response)
    return response


def _finish_cookies(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    deliver_nonce(request, response)
    state = state_of(request)
    if state.stale_cookie and not state.cookie_written:
        clear_session_cookie(request, response)


def origin_allowed(request: web.Request, origin: str) -> bool:
    """True when ``origin`` is the one the request came to, or this instance's public one.

    The request's own origin is its scheme and ``Host`` (behind a trusted proxy, the
    forwarded ones), so a dashboard opened at the machine's LAN address or ``.local`` name
    works as it does at ``public_url``; a page of any other site is still refused.
    """
    normal = _normal_origin(origin)
    if not normal:
        return False
    if normal == request_origin(request):
        return True
    public_url = core_of(request).config.public_url
    return normal in allowed_origins(public_url, request.config_dict[SETTINGS_KEY].server.hosts)


def request_origin(request: web.Request) -> str:
    """The origin this request was sent to: scheme and host, as the browser saw them."""
    scheme, host = request.scheme, request.host
    if from_trusted_proxy(request):
        scheme = forwarded_value(request, "X-Forwarded-Proto") or scheme
        host = forwarded_value(request, "X-Forwarded-Host") or host
    if not host or any(ch in host for ch in "/?#@ \\"):
        return ""
    return _normal_origin(f"{scheme}://{host}")


def wants_json(request: web.Request) -> bool:
    """True when the page's script sent the request and reads JSON answers."""
    return "application/json" in request.headers.get("Accept", "")


def refusal(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """A refused request: JSON the page's script shows, or an HTML error page."""
    if wants_json(request):
        return web.json_response({"error": message, "field": "form"}, status=status)
    return error_page(request, status, title, message)


@functools.lru_cache(maxsize=32)
def allowed_origins(public_url: str, hosts: HostsSettings) -> frozenset[str]:
    """The public URL's origin, plus the same scheme and port on each configured role host."""
    parts = urlsplit(public_url)
    origins = {_normal_origin(public_url)}
    port = f":{parts.port}" if parts.port and not _default_port(parts.scheme, parts.port) else ""
    for role in HOST_ROLES:
        name = getattr(hosts, role)
        if name:
            origins.add(f"{parts.scheme}://{name.lower().rstrip('.')}{port}")
    return frozenset(origins)


def _normal_origin(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    host = parts.hostname.rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port and not _default_port(parts.scheme, port) else ""
    return f"{parts.scheme.lower()}://{host}{suffix}"


def _default_port(scheme: str, port: int) -> bool:
    return (scheme.lower(), port) in {("http", 80), ("https", 443)}


def _chosen_body(exc: web.HTTPException) -> bool:
    """True when a handler gave the error an HTML or JSON body of its own."""
    kind = exc.content_type
    return kind == "text/html" or kind == "application/json" or kind.endswith("+json")


def _page_for_http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    title = _TITLES.get(exc.status, exc.reason)
    message = _MESSAGES.get(exc.status, "The request could not be completed.")
    response = error_page(request, exc.status, title, message)
    for name, value in exc.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers.setdefault(name, value)
    for name, morsel in exc.cookies.items():
        response.cookies[name] = morsel
    return response


def _sentence(detail: str) -> str:
    """A domain error's detail as a sentence for a page."""
    text = detail.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")
