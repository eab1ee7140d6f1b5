"""Time as the domain sees it: epoch seconds inside, ISO 8601 UTC with milliseconds outside."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]
system_clock: Clock = time.time


def iso(ts: float | None) -> str | None:
    """``2026-11-25T21:46:56.123Z`` for an epoch time; None stays None."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
