"""Ordering keys: which rows of the outbox form one stream that must arrive in order.

A key names one stream whose order matters to its receiver: one Alexa endpoint of one
linked user, one IFTTT user, one webhook's view of one device. Rows of a key are handed to
the dispatcher in commit order: a row is claimable only when no older pending row of its
key holds it back, and a row waiting for its retry holds back the rows behind it.

Some rows are *mergeable*: their change may be coalesced with the key's neighbouring
mergeable rows (one ChangeReport carrying the newest state of ordinary properties, one
Realtime request for several IFTTT nudges). Mergeable rows that are due at the same moment
are claimed together; otherwise every row waits for the older rows of its key: a Routine
trigger transition, a press, a lifecycle report and every webhook event always do, so a
coalesced report never jumps ahead of a pending trigger transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def alexa_key(grant_id: str, device_id: str) -> str:
    """One endpoint (device) as one linked Alexa account hears of it."""
    return f"alexa:{grant_id}:{device_id}"


def ifttt_key(user_id: str) -> str:
    """One IFTTT user's Realtime notifications."""
    return f"ifttt:{user_id}"


def webhook_key(webhook_id: str, device_id: str | None) -> str:
    """One webhook's events about one device (test sends carry no device)."""
    return f"webhook:{webhook_id}:{device_id or ''}"


def is_routine_trigger(device_type: str, options: Mapping[str, Any], prop: object) -> bool:
    """True for a property whose every transition Alexa must hear (it starts Routines).

    Such transitions are never merged into another report. Must agree with
    ``AlexaEndpoint.transitions`` in the Alexa adapter (a test checks it).
    """
    if prop == "detection":
        return True
    return prop == "power" and device_type == "switch" and options.get("routine_trigger") is True
