"""The contract between the dispatcher and a destination kind (webhooks, Alexa, IFTTT).

It lives in core so that every adapter can implement a sink without importing the
dispatcher; the app factory hands the sinks to the dispatcher by name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from staterelay.core.records import OutboxItem


@dataclass(frozen=True, slots=True)
class SinkResult:
    """What one delivery attempt came to.

    ``permanent`` means retrying cannot help (the destination is gone or refused the event
    for good); the dispatcher then marks the row dead. ``retry_after`` is the receiver's
    own wish, in seconds, for when to try again. ``merged_into`` names the outbox event
    whose delivery already carried this row's change: nothing was sent for the row itself.
    """

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False
    merged_into: str | None = None

    @classmethod
    def merged(cls, event_id: str) -> SinkResult:
        """The row's change went out with the report of outbox event ``event_id``."""
        return cls(delivered=True, merged_into=event_id)


class Sink(Protocol):
    """Delivers outbox rows of one sink name.

    ``deliver`` makes one attempt and reports it; it must not raise for anything the
    destination does (timeouts, refusals, bad answers) and must never put a secret in
    ``SinkResult.error``, which users read in their delivery history.

    A sink that can send only in one process of several (the MQTT bridge's, on the replica
    that leads) may also have ``ready() -> bool``: while it says False, the dispatcher hands
    its rows back for another process without counting an attempt.
    """

    name: str

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """Make one delivery attempt of ``item``."""
        ...

    async def close(self) -> None:
        """Release connections; called once, after the last ``deliver``."""
        ...


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


def error_code(raw: bytes, container: str, field: str) -> str | None:
    """The short error code an upstream put at ``body[container][field]`` (Alexa's
    ``payload.code``, Google's ``error.status``), or None when there is none that looks like
    one: a word of letters, digits and underscores, at most 64 long (it goes into logs)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    outer = body.get(container) if isinstance(body, dict) else None
    code = outer.get(field) if isinstance(outer, dict) else None
    if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) <= 64:
        return code
    return None
