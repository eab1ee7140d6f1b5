"""The application's outgoing HTTP: one shared client session, and one guarded for addresses
users give.

Alexa (Login with Amazon, the event gateway), IFTTT's Realtime API and any other service
StateRelay calls share ``shared()``: one connection pool, no proxy or cookies from the
environment, each caller naming itself in ``User-Agent`` and setting its own timeout per
request. Deliveries to URLs users typed (webhooks) use ``guarded()``, whose every new
connection resolves through the SSRF guard (``staterelay.app.ssrf``) and whose answers are
never decompressed (they are drained, not read). Both sessions open on first use, inside the
running loop, and close with the application.
"""

from __future__ import annotations

from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver

from staterelay import __version__
from staterelay.app.ssrf import GuardedResolver
from staterelay.core.netpolicy import AddressPolicy

USER_AGENT: Final = f"StateRelay/{__version__}"
CONNECTIONS: Final = 100
DNS_CACHE_SECONDS: Final = 300


class OutgoingHttp:
    """The two client sessions of one application; ``close`` ends both."""

    def __init__(
        self, policy: AddressPolicy | None = None, *, resolver: AbstractResolver | None = None
    ) -> None:
        """``policy`` guards ``guarded()`` (the default refuses every private address);
        ``resolver`` is the DNS resolver behind the guard (tests stub it)."""
        self._policy = policy or AddressPolicy()
        self._inner_resolver = resolver
        self._shared: aiohttp.ClientSession | None = None
        self._guarded: aiohttp.ClientSession | None = None
        self._guard: GuardedResolver | None = None

    def shared(self) -> aiohttp.ClientSession:
        """The session for services StateRelay is configured to call."""
        if self._shared is None or self._shared.closed:
            self._shared = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTIONS, ttl_dns_cache=DNS_CACHE_SECONDS),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return self._shared

    def guarded(self) -> aiohttp.ClientSession:
        """The session for URLs users give: it connects only where the policy allows."""
        if self._guarded is None or self._guarded.closed:
            self._guard = GuardedResolver(self._policy, self._inner_resolver)
            self._guarded = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=self._guard,
                    # Every new connection resolves (and so is checked) afresh; pooled
                    # connections were checked when they were opened.
                    use_dns_cache=False,
                    limit=CONNECTIONS,
                ),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                raise_for_status=False,
            )
        return self._guarded

    async def close(self) -> None:
        """Close both sessions and the guard's resolver; a later use opens new ones."""
        shared, self._shared = self._shared, None
        guarded, self._guarded = self._guarded, None
        guard, self._guard = self._guard, None
        if shared is not None:
            await shared.close()
        if guarded is not None:
            await guarded.close()
        if guard is not None:
            await guard.close()
