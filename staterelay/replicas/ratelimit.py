"""Request rate limits every replica counts together, in Redis.

One key per (scope, subject) — ``<prefix>:rl:<scope>:<sha256 of the subject>``, so no
address or credential is stored in Redis — incremented by a Lua script that starts the
window's expiry on the first request, atomically. While Redis is unreachable the replica
counts in process instead; a request never fails because Redis does.
"""

from __future__ import annotations

import hashlib
from typing import Final

from staterelay.core.ratelimit import MemoryRateLimiter
from staterelay.replicas.link import RedisLink

# KEYS[1]: the counter; ARGV[1]: the window in milliseconds. Returns {count, ms left}.
HIT_SCRIPT: Final = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


def subject_digest(subject: str) -> str:
    """The hex SHA-256 of a subject, as keys carry it."""
    return hashlib.sha256(subject.encode()).hexdigest()


class RedisRateLimiter:
    """``RateLimiter`` shared through Redis, falling back to in-process counting."""

    def __init__(self, link: RedisLink, *, fallback: MemoryRateLimiter | None = None) -> None:
        self._link = link
        self._fallback = fallback or MemoryRateLimiter()
        self._hit = link.client.register_script(HIT_SCRIPT)

    async def hit(self, scope: str, subject: str, limit: int, window: float) -> float:
        """Count one request for everyone; in process while Redis is unreachable."""
        if not self._link.down:
            key = self._link.key("rl", scope, subject_digest(subject))
            try:
                count, ttl_ms = await self._hit(keys=[key], args=[max(1, round(window * 1000))])
            except self._link.errors as error:
                self._link.failed(error)
            else:
                self._link.succeeded()
                return 0.0 if int(count) <= limit else max(int(ttl_ms), 1) / 1000
        return self._fallback.hit_now(scope, subject, limit, window)

    async def close(self) -> None:
        """Forget the in-process fallback counts (the link is closed by its owner)."""
        await self._fallback.close()
