"""What replicas share through Redis (``redis.url``): bus events, rate limits, sign-in counts.

The app factory builds a ``Fanout`` when Redis is configured and hands its pieces to core
and the web middleware; a cleanup context starts and closes it. Redis is an accelerator,
never the truth: each piece keeps working in process while Redis is unreachable. Only this
package talks to Redis, and the redis package is imported only when it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from staterelay.core.clock import Clock
from staterelay.replicas.bus import RedisBus
from staterelay.replicas.link import RedisLink
from staterelay.replicas.ratelimit import RedisRateLimiter
from staterelay.replicas.throttle import RedisLoginThrottle
from staterelay.settings import Settings


@dataclass(frozen=True)
class Fanout:
    """The Redis link of one process and everything that uses it."""

    link: RedisLink
    bus: RedisBus
    rate_limiter: RedisRateLimiter
    login_throttle: RedisLoginThrottle

    @property
    def connected(self) -> bool:
        """True while Redis answers (for ``/metrics``)."""
        return self.link.up

    @property
    def reconnects(self) -> int:
        """Times Redis answered again after failing."""
        return self.link.reconnects

    @property
    def publish_failures(self) -> int:
        """Bus events that did not reach the other replicas."""
        return self.bus.publish_failures

    async def start(self) -> None:
        """Start relaying bus events (returns even when Redis is down)."""
        await self.bus.start()

    async def close(self) -> None:
        """Stop relaying and close the connections."""
        await self.bus.stop()
        await self.rate_limiter.close()
        await self.link.close()


def open_fanout(settings: Settings, clock: Clock) -> Fanout:
    """The Redis pieces for ``settings.redis``; nothing connects until used or started."""
    if not settings.redis.url:
        raise ValueError("redis.url is not set")
    link = RedisLink(settings.redis.url, key_prefix=settings.redis.key_prefix)
    return Fanout(
        link=link,
        bus=RedisBus(link),
        rate_limiter=RedisRateLimiter(link),
        login_throttle=RedisLoginThrottle(
            link, clock, max_failures=settings.accounts.login_max_failures
        ),
    )


__all__ = [
    "Fanout",
    "RedisBus",
    "RedisLink",
    "RedisLoginThrottle",
    "RedisRateLimiter",
    "open_fanout",
]
