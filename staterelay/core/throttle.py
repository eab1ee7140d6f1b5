"""Sign-in throttling: growing delays per account and per client address.

After ``max_failures`` failed sign-ins for one account (or ``ip_max_failures`` from one
address), each further failure locks that key for twice as long as the one before, from
``base_delay`` up to ``max_delay``. A success clears the account's count; an address's count
only fades, so one valid account cannot launder a spraying address. Counts are forgotten
``forget_after`` seconds after the last failure. Keys are counted whether or not the account
exists, so a refusal says nothing about which emails are registered.
"""

from __future__ import annotations

import math
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from staterelay.core.clock import Clock
from staterelay.core.errors import StateRelayError

BASE_DELAY = 2.0
MAX_DELAY = 900.0
FORGET_AFTER = 86400.0
CAPACITY = 10_000
# A household shares one address behind NAT; spraying needs many accounts per address.
IP_FACTOR = 4


class LoginThrottled(StateRelayError):
    """Too many failed sign-ins for this account or from this address; try again later."""

    status = 429
    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} seconds")
        self.retry_after = retry_after


def account_key(email: str) -> str:
    """The throttle key of an email as typed: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


@dataclass(slots=True)
class _Count:
    failures: int
    last_failure: float
    locked_until: float


class LoginThrottle:
    """Failure counters keyed by account and by address, bounded in memory (LRU)."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int,
        ip_max_failures: int | None = None,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        forget_after: float = FORGET_AFTER,
        capacity: int = CAPACITY,
    ) -> None:
        self._clock = clock
        self._limits = {
            "account": max_failures,
            "ip": ip_max_failures if ip_max_failures is not None else max_failures * IP_FACTOR,
        }
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._forget_after = forget_after
        self._capacity = capacity
        self._counts: OrderedDict[tuple[str, str], _Count] = OrderedDict()

    def retry_after(self, account: str, ip: str) -> int:
        """Whole seconds until an attempt for ``account`` from ``ip`` is allowed; 0 now."""
        now = self._clock()
        wait = 0.0
        for key in (("account", account), ("ip", ip)):
            count = self._current(key, now)
            if count is not None:
                wait = max(wait, count.locked_until - now)
        return math.ceil(wait) if wait > 0 else 0

    def check(self, account: str, ip: str) -> None:
        """Raise ``LoginThrottled`` while either key is locked."""
        wait = self.retry_after(account, ip)
        if wait:
            raise LoginThrottled(wait)

    def record_failure(self, account: str, ip: str) -> None:
        """Count a failed attempt against both keys and lock those over their limit."""
        now = self._clock()
        for key in (("account", account), ("ip", ip)):
            count = self._current(key, now) or _Count(0, now, now)
            count.failures += 1
            count.last_failure = now
            over = count.failures - self._limits[key[0]]
            if over >= 0:
                count.locked_until = now + min(self._base_delay * 2**over, self._max_delay)
            self._counts[key] = count
            self._counts.move_to_end(key)
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)

    def record_success(self, account: str) -> None:
        """Clear the account's failures after a correct password."""
        self._counts.pop(("account", account), None)

    # The async forms are what sign-in uses: a subclass may keep the counts elsewhere
    # (``staterelay.replicas`` shares them between replicas through Redis).
    async def acheck(self, account: str, ip: str) -> None:
        """``check``, awaitable."""
        self.check(account, ip)

    async def arecord_failure(self, account: str, ip: str) -> None:
        """``record_failure``, awaitable."""
        self.record_failure(account, ip)

    async def arecord_success(self, account: str) -> None:
        """``record_success``, awaitable."""
        self.record_success(account)

    def _current(self, key: tuple[str, str], now: float) -> _Count | None:
        count = self._counts.get(key)
        if count is not None and now - count.last_failure >= self._forget_after:
            del self._counts[key]
            return None
        return count
