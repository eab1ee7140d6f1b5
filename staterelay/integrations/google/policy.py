"""``GooglePolicy``: what Google Home's ``google`` sink owes for a change, in core's terms.

Every user of the household with a Google Home link (the interest facts' ``links``) gets a
Report State row for each state change and a notification row for each press, and a Request
Sync row when a device is added, deleted, renamed, moved to another room or has its options
changed (which may change its attributes). All rows of one user and device share an
ordering key, so a new device's Request Sync goes before its first Report State. A state
change that is not a Routine trigger may merge into the newest queued report of its key
(the sink reports the whole state as it is when sending); trigger transitions and presses
never merge, and nothing merges past them.
"""

from __future__ import annotations

from typing import Final

from staterelay.core.delivery import (
    NOTHING,
    DeliveryPlan,
    DeviceFacts,
    InterestFacts,
    endpoint_reports,
)
from staterelay.core.records import NewOutboxEvent
from staterelay.integrations.google.links import INTEGRATION, SINK

REPORT_EVENTS: Final = frozenset({"state.changed", "button.pressed"})
SYNC_EVENTS: Final = frozenset({"device.created", "device.deleted", "device.updated"})
# Fields whose change Google must learn with a SYNC (names, rooms, attributes).
SYNC_FIELDS: Final = frozenset({"name", "room", "options"})


def google_key(user_id: str, device_id: str) -> str:
    """One device as one linked Google user hears of it."""
    return f"google:{user_id}:{device_id}"


class GooglePolicy:
    """Report State and Request Sync rows for every linked Google Home user."""

    sink = SINK

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """One row per linked user, payload stamped with the commit time and version."""
        users = facts.links.get(INTEGRATION, ())
        device_id = event.device_id
        kind = event.event_type
        if not users or device_id is None or event.only_destination is not None:
            return NOTHING
        if kind in SYNC_EVENTS:
            if kind == "device.updated" and not SYNC_FIELDS & set(
                event.payload.get("changed") or ()
            ):
                return NOTHING
        elif kind not in REPORT_EVENTS:
            return NOTHING
        return endpoint_reports(
            SINK, users, lambda user_id: google_key(user_id, device_id), event, device, now
        )
