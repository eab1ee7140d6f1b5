"""Time as the domain sees it: epoch seconds inside, ISO 8601 UTC with milliseconds outside."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
system_clock: Clock = time.time


def iso(ts: float | None) -> str | None:
    """``2026-11-25T21:46:56.123Z`` for an epoch time; None stays None."""
    if ts is None:
        return None
    seconds = math.floor(ts)
    millis = min(int((ts - seconds) * 1000), 999)
    return f"{_iso_seconds(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
