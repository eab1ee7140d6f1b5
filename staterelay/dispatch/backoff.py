"""When to try a failed delivery again: exponential backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

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
