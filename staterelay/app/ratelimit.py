"""Request rate limits (``limits`` settings): per API credential and per client address.

Which limit counts a request is its surface's ``limit`` (see ``staterelay.app.surfaces``).
Per credential: a request to the API that presents an ``Authorization`` header counts
against the SHA-256 of the credential it carries, whether or not it is valid (counting comes
before, and costs less than, authenticating it); so does every ``/ifttt/v1/`` request with
its IFTTT access token, under a limit of its own. Per address: every request of a counted
surface, as ``server.trusted_proxies`` resolve its client address; Alexa's and IFTTT's
surfaces (a few shared addresses call for every user), the operations endpoints and static
files are not counted. Over a limit the answer is 429 with ``Retry-After``, rendered by the
surface's error renderer: problem+json on the API, an OAuth error on the OAuth endpoints,
IFTTT's errors on its API, the error page elsewhere.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

from aiohttp import web

from staterelay.app.integration import RateLimit, Surface
from staterelay.browser.sessions import client_ip
from staterelay.core.errors import StateRelayError
from staterelay.core.ratelimit import RateLimiter
from staterelay.settings import LimitsSettings

WINDOW: Final = 60.0  # the limits are per minute
# Compared by identity on every request: an Enum's hash is a Python-level call.
_UNCOUNTED: Final = RateLimit.NONE
_IFTTT_TOKEN: Final = RateLimit.IFTTT_TOKEN


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
        self._any = bool(limits.api_key_per_minute or limits.ip_per_minute)

    def counts(self, surface: Surface) -> bool:
        """False for the surfaces no limit applies to (checked without awaiting anything)."""
        limit = surface.limit
        if limit is _UNCOUNTED:
            return False
        if limit is _IFTTT_TOKEN:
            return bool(self._ifttt)
        return self._any

    async def refusal(self, request: web.Request, surface: Surface) -> web.Response | None:
        """Count the request; the 429 answer when it is over a limit, None to let it through."""
        limits = self._limits
        wait, what = 0.0, ""
        if surface.limit is RateLimit.IFTTT_TOKEN:
            return await self._ifttt_refusal(request, surface)
        if limits.api_key_per_minute and surface.limit is RateLimit.CREDENTIAL:
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
        return _too_many_requests(request, surface, wait, what)

    async def _ifttt_refusal(self, request: web.Request, surface: Surface) -> web.Response | None:
        """IFTTT calls from a few shared addresses for every user: only its token counts."""
        credential = presented_credential(request)
        if not self._ifttt or credential is None:
            return None
        digest = hashlib.sha256(credential.encode()).hexdigest()
        wait = await self._limiter.hit("ifttt", digest, self._ifttt, WINDOW)
        if wait <= 0:
            return None
        what = f"{self._ifttt} requests a minute with this IFTTT connection"
        return _too_many_requests(request, surface, wait, what)


def presented_credential(request: web.Request) -> str | None:
    """The credential of the ``Authorization`` header (after its scheme), if any."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    return credential.strip() or scheme


def _too_many_requests(
    request: web.Request, surface: Surface, wait: float, what: str
) -> web.Response:
    """The 429 answer in the wire format of the request's surface."""
    seconds = max(1, math.ceil(wait))
    error = RateLimited(f"more than {what}; try again in {seconds} seconds", seconds)
    headers = {"Retry-After": str(seconds), "Cache-Control": "no-store"}
    return surface.errors(request, error, headers)
