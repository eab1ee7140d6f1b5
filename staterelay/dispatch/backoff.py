"""When to try a failed delivery again: exponential backoff with jitter, and ``Retry-After``."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from email.utils import parsedate_to_datetime

_MAX_EXPONENT = 64  # base * factor ** 64 is past any sane cap and still a finite float


def retry_delay(
    attempt: int,
    *,
    base: float,
    factor: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first).

    The ceiling grows as ``base * factor ** (attempt - 1)`` up to ``cap``; the delay is drawn
    from its upper half ("equal jitter"), so retries of many rows spread out and a failing
    receiver still gets a pause that grows with every attempt.
    """
    ceiling = min(cap, base * factor ** min(max(attempt - 1, 0), _MAX_EXPONENT))
    return ceiling / 2 + rand() * ceiling / 2


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
