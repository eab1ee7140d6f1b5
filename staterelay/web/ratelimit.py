"""Request rate limits (``limits`` settings): per API credential and per client address.

Per credential: every ``/api/`` request that presents an ``Authorization`` header counts
against the SHA-256 of the credential it carries, whether or not it is valid (counting
comes before, and costs less than, authenticating it). Per address: every request except
Alexa's and IFTTT's (a few shared addresses call for every user), the operations endpoints
and static files counts against the client address, as ``server.trusted_proxies`` resolve
it. Over a limit the answer is 429 with ``Retry-After``, in the wire format of the surface:
problem+json on the API, an OAuth error on the OAuth endpoints, the error page elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from staterelay.core.ratelimit import RateLimiter
from staterelay.errors import StateRelayError
from staterelay.settings import LimitsSettings
from staterelay.web.middleware import harden
from staterelay.web.render import error_page
from staterelay.web.sessions import client_ip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WINDOW: Final = 60.0  # the limits are per minute
API_PREFIX: Final = "/api/"
UNCOUNTED_PREFIXES: Final = ("/alexa/", "/ifttt/", "/static/")
UNCOUNTED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
OAUTH_JSON_PATHS: Final = frozenset(
    {"/oauth/token", "/oauth/revoke", "/oauth/userinfo", "/.well-known/oauth-authorization-server"}
)
PROBLEM_TYPE: Final = "https://staterelay.dev/problems/rate_limited"


class RateLimited(StateRelayError):
    """Too many requests with this credential or from this address; try again later."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def rate_limit_middleware(limiter: RateLimiter, limits: LimitsSettings) -> Middleware:
    """The middleware enforcing ``limits`` with ``limiter``'s counters."""

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in UNCOUNTED_PATHS or path.startswith(UNCOUNTED_PREFIXES):
            return await handler(request)
        wait, what = 0.0, ""
        if limits.api_key_per_minute and path.startswith(API_PREFIX):
            credential = presented_credential(request)
            if credential is not None:
                digest = hashlib.sha256(credential.encode()).hexdigest()
                wait = await limiter.hit("key", digest, limits.api_key_per_minute, WINDOW)
                what = f"{limits.api_key_per_minute} requests a minute with this credential"
        if limits.ip_per_minute:
            ip_wait = await limiter.hit("ip", client_ip(request), limits.ip_per_minute, WINDOW)
            if ip_wait > wait:
                wait, what = ip_wait, f"{limits.ip_per_minute} requests a minute from this address"
        if wait <= 0:
            return await handler(request)
        seconds = max(1, math.ceil(wait))
        return too_many_requests(
            request, RateLimited(f"more than {what}; try again in {seconds} seconds", seconds)
        )

    return rate_limit


def presented_credential(request: web.Request) -> str | None:
    """The credential of the ``Authorization`` header (after its scheme), if any."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    return credential.strip() or scheme


def too_many_requests(request: web.Request, error: RateLimited) -> web.Response:
    """The 429 answer in the wire format of the request's surface."""
    headers = {"Retry-After": str(error.retry_after), "Cache-Control": "no-store"}
    path = request.path
    if path.startswith(API_PREFIX):
        body = {
            "type": PROBLEM_TYPE,
            "title": error.title,
            "status": error.status,
            "detail": error.detail,
            "code": error.code,
        }
        return web.Response(
            status=error.status,
            text=json.dumps(body),
            content_type="application/problem+json",
            headers=headers,
        )
    if path in OAUTH_JSON_PATHS:
        # RFC 6749 has no code for this; temporarily_unavailable says "retry later".
        body = {"error": "temporarily_unavailable", "error_description": error.detail}
        return web.json_response(
            body, status=error.status, headers={**headers, "Pragma": "no-cache"}
        )
    page = error_page(request, error.status, error.title, f"Too many requests: {error.detail}.")
    page.headers["Retry-After"] = headers["Retry-After"]
    harden(page)
    return page
