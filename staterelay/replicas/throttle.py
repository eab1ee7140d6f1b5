"""Sign-in throttling every replica counts together, in Redis.

The same rules as ``LoginThrottle`` (see ``staterelay.core.throttle``), with each key's
failure count, last failure and lock end in a hash ``<prefix>:login:<account|ip>:<sha256>``
that expires ``forget_after`` seconds after its last failure. Times are the core clock's
epoch seconds, so replicas need synchronised clocks (NTP), as for everything else. While
Redis is unreachable the replica throttles with its own in-process counts.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Final

from staterelay.core.clock import Clock
from staterelay.core.throttle import LoginThrottle, LoginThrottled
from staterelay.replicas.link import RedisLink

# KEYS: the account's and the address's hashes. ARGV: now, base delay, max delay,
# forget-after (seconds), then each key's failure limit. Counts one failure against each.
FAILURE_SCRIPT: Final = """
local now = tonumber(ARGV[1])
local base, maxd, forget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[4 + i])
  local state = redis.call('HMGET', key, 'failures', 'last', 'locked')
  local failures, last = tonumber(state[1]) or 0, tonumber(state[2])
  local locked = tonumber(state[3]) or now
  if last == nil or now - last >= forget then
    failures, locked = 0, now
  end
  failures = failures + 1
  local over = failures - limit
  if over >= 0 then
    locked = now + math.min(base * 2 ^ over, maxd)
  end
  redis.call('HSET', key, 'failures', failures, 'last', string.format('%.17g', now),
             'locked', string.format('%.17g', locked))
  redis.call('PEXPIRE', key, math.ceil(forget * 1000))
end
return 1
"""


class RedisLoginThrottle(LoginThrottle):
    """``LoginThrottle`` whose async methods keep the counts in Redis for every replica."""

    def __init__(self, link: RedisLink, clock: Clock, *, max_failures: int, **options: Any) -> None:
        super().__init__(clock, max_failures=max_failures, **options)
        self._link = link
        self._record = link.client.register_script(FAILURE_SCRIPT)

    def _keys(self, account: str, ip: str) -> list[str]:
        return [self._key("account", account), self._key("ip", ip)]

    def _key(self, kind: str, value: str) -> str:
        return self._link.key("login", kind, hashlib.sha256(value.encode()).hexdigest())

    async def acheck(self, account: str, ip: str) -> None:
        """Raise ``LoginThrottled`` while the account or the address is locked anywhere."""
        if self._link.down:
            self.check(account, ip)
            return
        try:
            async with self._link.client.pipeline(transaction=False) as pipe:
                for key in self._keys(account, ip):
                    pipe.hmget(key, ["last", "locked"])
                states = await pipe.execute()
        except self._link.errors as error:
            self._link.failed(error)
            self.check(account, ip)
            return
        self._link.succeeded()
        now = self._clock()
        wait = 0.0
        for last, locked in states:
            if last is None or locked is None or now - float(last) >= self._forget_after:
                continue
            wait = max(wait, float(locked) - now)
        if wait > 0:
            raise LoginThrottled(math.ceil(wait))

    async def arecord_failure(self, account: str, ip: str) -> None:
        """Count a failure against both keys, for every replica."""
        if not self._link.down:
            args: list[str | float] = [
                repr(self._clock()),
                self._base_delay,
                self._max_delay,
                self._forget_after,
                self._limits["account"],
                self._limits["ip"],
            ]
            try:
                await self._record(keys=self._keys(account, ip), args=args)
            except self._link.errors as error:
                self._link.failed(error)
            else:
                self._link.succeeded()
                return
        self.record_failure(account, ip)

    async def arecord_success(self, account: str) -> None:
        """Clear the account's failures everywhere (and here)."""
        self.record_success(account)
        if not self._link.down:
            try:
                await self._link.client.delete(self._key("account", account))
            except self._link.errors as error:
                self._link.failed(error)
            else:
                self._link.succeeded()
