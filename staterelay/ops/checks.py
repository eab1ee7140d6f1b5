"""One finding of ``staterelay doctor`` and how durations read in its lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    """One finding: OK, WARN (works, but look) or FAIL (broken); ``fix`` says what to do."""

    name: str
    status: Status
    message: str
    fix: str | None = None


def span(seconds: float) -> str:
    """A duration as people say it: "3 hours", "12 minutes"."""
    seconds = abs(seconds)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} seconds"
