"""The process's Redis client, and whether Redis answers.

Everything that uses Redis reports each success and failure here, so the replica logs once
when Redis goes away and once when it answers again. While it is down, callers on the
request path skip Redis and use their in-process fallback instead of waiting on it; only
the bus's subscriber keeps trying (with backoff), and its success brings everyone back.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from redis.asyncio import Redis

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 1.0  # seconds to open a connection
COMMAND_TIMEOUT: Final = 0.5  # seconds a command may take before Redis counts as down
MIN_BACKOFF: Final = 0.25
MAX_BACKOFF: Final = 2.0  # after Redis returns, the replica notices within about this long


class RedisLink:
    """One Redis client per process, with up/down bookkeeping and reconnect backoff."""

    def __init__(self, url: str, *, key_prefix: str) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError:  # pragma: no cover - the extra is installed wherever tests run
            raise RuntimeError(
                "redis.url is set but the redis package is missing: pip install 'staterelay[redis]'"
            ) from None
        # One immediate retry inside redis-py, on a fresh connection (a pooled one may have
        # died with a restarted Redis); past that a failure surfaces, the callers work alone
        # and this link's backoff decides when to try again.
        self.client: Redis = Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        self.errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self.key_prefix = key_prefix
        self.where = redacted(url)
        self._up: bool | None = None  # None until the first answer or failure
        self._next_try = 0.0
        self._backoff = MIN_BACKOFF
        self.reconnects = 0  # times Redis answered again after a failure

    @property
    def down(self) -> bool:
        """True since a failure, until something reaches Redis again."""
        return self._up is False

    @property
    def up(self) -> bool:
        """True since Redis last answered (False before it has, and while it is down)."""
        return self._up is True

    def retry_in(self) -> float:
        """Seconds the reconnecting subscriber waits before its next try (0 when up)."""
        return max(0.0, self._next_try - time.monotonic()) if self._up is False else 0.0

    def succeeded(self) -> None:
        """Redis answered."""
        if self._up is True:
            return
        if self._up is False:
            self.reconnects += 1
            _LOGGER.warning(
                "Redis at %s answers again: sharing live updates and rate limits with the "
                "other replicas",
                self.where,
            )
        else:
            _LOGGER.info("connected to Redis at %s", self.where)
        self._up = True
        self._backoff = MIN_BACKOFF

    def failed(self, error: BaseException) -> None:
        """Redis did not answer: note it, log the first failure, and push the next try back."""
        if self._up is not False:
            _LOGGER.warning(
                "Redis at %s is unreachable (%s): this replica works alone, counting rate "
                "limits in process, until it answers again",
                self.where,
                _describe(error),
            )
        self._up = False
        self._next_try = time.monotonic() + self._backoff * random.uniform(0.8, 1.0)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def key(self, *parts: str) -> str:
        """A key or channel name under this instance's prefix."""
        return ":".join((self.key_prefix, *parts))

    async def close(self) -> None:
        """Close the client's connections."""
        with contextlib.suppress(*self.errors):  # closing a dead link is fine
            await self.client.aclose()


def redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
