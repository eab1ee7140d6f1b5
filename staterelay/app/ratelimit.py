"""Request rate limits (``limits`` settings): per API credential and per client address.

Per credential: every ``/api/`` request that presents an ``Authorization`` header counts
against the SHA-256 of the credential it carries, whether or not it is valid (counting
comes before, and costs less than, authenticating it); so does every ``/ifttt/v1/``
request with its IFTTT access token, under a limit of its own. Per address: every request except
Alexa's and IFTTT's (a few shared addresses call for every user), the operations endpoints
and static files counts against the client address, as ``server.trusted_proxies`` resolve
it. Over a limit the answer is 429 with ``Retry-After``, in the wire format of the surface:
problem+json on the API, an OAuth error on the OAuth endpoints, the error page elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Final

from aiohttp import web

from staterelay.browser.middleware import harden
from staterelay.browser.render import error_page
from staterelay.browser.sessions import client_ip
from staterelay.core.errors import StateRelayError
from staterelay.core.ratelimit import RateLimiter
from staterelay.settings import LimitsSettings

WINDOW: Final = 60.0  # the limits are per minute
API_PREFIX: Final = "/api/"
IFTTT_PREFIX: Final = "/ifttt/v1/"
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


class RateLimitGate:
    """Enforces ``limits`` with ``limiter``'s counters; the request boundary asks it first."""

    def __init__(
        self, limiter: RateLimiter, limits: LimitsSettings, *, ifttt_token_per_minute: int = 0
    ) -> None:
        self._limiter = limiter
        self._limits = limits
        self._ifttt = ifttt_token_per_minute

    def counts(self, path: str) -> bool:
        """False for the paths no limit applies to (checked without awaiting anything)."""
        limits = self._limits
        if self._ifttt and path.startswith(IFTTT_PREFIX):
            return True
        if not (limits.api_key_per_minute or limits.ip_per_minute):
            return False
        return path not in UNCOUNTED_PATHS and not path.startswith(UNCOUNTED_PREFIXES)

    async def refusal(self, request: web.Request) -> web.Response | None:
        """Count the request; the 429 answer when it is over a limit, None to let it through."""
        limits, path = self._limits, request.path
        wait, what = 0.0, ""
        if path.startswith(IFTTT_PREFIX):
            return await self._ifttt_refusal(request)
        if limits.api_key_per_minute and path.startswith(API_PREFIX):
            credential = presented_credential(request)
            if credential is not None:
                digest = hashlib.sha256(credential.encode()).hexdigest()
                wait = await self._limiter.hit("key", digest, limits.api_key_per_minute, WINDOW)
                what = f"{limits.api_key_per_minute} requests a minute with this credential"
        if limits.ip_per_minute:
            ip_wait = await self._limiter.hit(
                "ip", client_ip(request), limits.ip_per_minute, WINDOW
            )
            if ip_wait > wait:
                wait, what = ip_wait, f"{limits.ip_per_minute} requests a minute from this address"
        if wait <= 0:
            return None
        seconds = max(1, math.ceil(wait))
        return too_many_requests(
            request, RateLimited(f"more than {what}; try again in {seconds} seconds", seconds)
        )

    async def _ifttt_refusal(self, request: web.Request) -> web.Response | None:
        """IFTTT calls from a few shared addresses for every user: only its token counts."""
        credential = presented_credential(request)
        if not self._ifttt or credential is None:
            return None
        digest = hashlib.sha256(credential.encode()).hexdigest()
        wait = await self._limiter.hit("ifttt", digest, self._ifttt, WINDOW)
        if wait <= 0:
            return None
        seconds = max(1, math.ceil(wait))
        what = f"{self._ifttt} requests a minute with this IFTTT connection"
        return too_many_requests(
            request, RateLimited(f"more than {what}; try again in {seconds} seconds", seconds)
        )


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
    if path.startswith(IFTTT_PREFIX):
        # IFTTT's own error shape; it retries later.
        return web.Response(
            status=error.status,
            text=json.dumps({"errors": [{"message": error.detail}]}),
            content_type="application/json",
            charset="utf-8",
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
