"""Who hears of a change, and how: the delivery policy of each sink, and the planner.

Pure functions of a change's events, the household's interest facts and the device: no
database, no clock of their own. An integration contributes its policy (the built-in ones
are below); the planner asks each policy about each event and adds the plans up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from staterelay.core.delivery.keys import alexa_key, ifttt_key, is_routine_trigger, webhook_key
from staterelay.core.delivery.plan import (
    NOTHING,
    DeliveryPlan,
    DeviceFacts,
    InterestFacts,
    Merge,
    PlannedRow,
    TimelineEvent,
)
from staterelay.core.records import NewOutboxEvent
from staterelay.core.records.ifttt import (
    REALTIME_BATCH,
    REALTIME_EVENT,
    REALTIME_SINK,
    timeline_entry,
)

ALEXA_SINK: Final = "alexa"
WEBHOOK_SINK: Final = "webhook"
# Property changes and presses become ChangeReports and DoorbellPress events; the device
# lifecycle becomes AddOrUpdateReport and DeleteReport, so Alexa keeps no ghost devices.
ALEXA_EVENT_TYPES: Final = frozenset(
    {"state.changed", "button.pressed", "device.created", "device.updated", "device.deleted"}
)


class DeliveryPolicy(Protocol):
    """What one sink must hear of an event, given the household's facts."""

    sink: str

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """The rows (and timeline events) this sink owes for ``event``."""
        ...


def endpoint_reports(
    sink: str,
    destinations: Sequence[str],
    key_of: Callable[[str], str],
    event: NewOutboxEvent,
    device: DeviceFacts,
    now: float,
) -> DeliveryPlan:
    """One row per linked account (Alexa grant, Google user) reporting a device's event.

    The payload is stamped with the commit time and the device's version. A state change
    that is not a Routine trigger may merge into the account's newest queued row for the
    device (``Merge("tail")``): the sink builds that report from the device as it is when
    sending, so it carries this change too. Triggers, presses and lifecycle events never
    merge, and nothing merges past them.
    """
    device_id = event.device_id
    if device_id is None:
        return NOTHING
    mergeable = (
        event.event_type == "state.changed"
        and device.type is not None
        and not is_routine_trigger(device.type, device.options, event.payload.get("property"))
    )
    payload = {**event.payload, "at": now, "device_version": device.version}
    merge = Merge("tail", version=device.version) if mergeable else None
    return DeliveryPlan(
        rows=tuple(
            PlannedRow(
                sink=sink,
                destination=destination,
                ordering_key=key_of(destination),
                event_type=event.event_type,
                device_id=device_id,
                payload=payload,
                mergeable=mergeable,
                merge=merge,
            )
            for destination in destinations
        )
    )


class AlexaPolicy:
    """Every linked Alexa account hears of every change, press and lifecycle event (what
    may merge: ``endpoint_reports``)."""

    sink = ALEXA_SINK

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """One row per linked account; payload stamped with the commit time and version."""
        device_id = event.device_id
        if (
            not facts.alexa_grants
            or event.event_type not in ALEXA_EVENT_TYPES
            or device_id is None
            or event.only_destination is not None
        ):
            return NOTHING
        return endpoint_reports(
            ALEXA_SINK,
            facts.alexa_grants,
            lambda grant_id: alexa_key(grant_id, device_id),
            event,
            device,
            now,
        )


class WebhookPolicy:
    """Every enabled webhook whose filters match hears of the event; a test send goes to the
    one webhook it names, whatever its filters."""

    sink = WEBHOOK_SINK

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """One row per matching webhook, never merged."""
        rows = []
        for hook in facts.webhooks:
            if event.only_destination is not None:
                if hook.webhook_id != event.only_destination:
                    continue
            elif (hook.event_types is not None and event.event_type not in hook.event_types) or (
                hook.device_ids is not None and event.device_id not in hook.device_ids
            ):
                continue
            rows.append(
                PlannedRow(
                    sink=WEBHOOK_SINK,
                    destination=hook.webhook_id,
                    ordering_key=webhook_key(hook.webhook_id, event.device_id),
                    event_type=event.event_type,
                    device_id=event.device_id,
                    payload=event.payload,
                )
            )
        return DeliveryPlan(rows=tuple(rows))


class IftttPolicy:
    """A household linked to IFTTT keeps trigger timelines, and IFTTT is nudged to poll.

    Each change a trigger follows is appended to its timeline (and to the timeline of each
    tracked threshold a reading crosses). Live trigger identities that care get a Realtime
    notification: one row per user (their ordering key) and device, due at the end of the
    debounce window, which later changes in the window join (``Merge("waiting")``) up to
    IFTTT's 1,000 identities per request.
    """

    sink = REALTIME_SINK

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """The timeline event, and the Realtime rows of the identities that care."""
        if not facts.ifttt_linked or event.only_destination is not None:
            return NOTHING
        entry = timeline_entry(event.event_type, event.device_id, event.payload)
        if entry is None:
            return NOTHING
        crossed: tuple[str, ...] = ()
        if entry.property == "temperature":
            crossed = tuple(
                threshold.variant
                for threshold in facts.thresholds.get(entry.device_id, ())
                if threshold.crossed(entry.old_number, entry.new_number)
            )
        timeline = TimelineEvent.of(entry, crossed)
        if not facts.realtime_enabled:
            return DeliveryPlan(timeline=(timeline,))
        wanted: dict[str, set[str]] = {}
        for watch in facts.ifttt_watches:
            if (
                watch.device_id == entry.device_id
                and watch.kind == entry.kind
                and (watch.threshold is None or watch.threshold.variant in crossed)
            ):
                wanted.setdefault(watch.user_id, set()).add(watch.identity)
        debounce = facts.realtime_debounce
        due = math.ceil(now / debounce) * debounce if debounce > 0 else now
        rows = []
        for user_id, identities in sorted(wanted.items()):
            ordered = sorted(identities)
            for start in range(0, len(ordered), REALTIME_BATCH):
                chunk = tuple(ordered[start : start + REALTIME_BATCH])
                rows.append(
                    PlannedRow(
                        sink=REALTIME_SINK,
                        destination=entry.device_id,
                        ordering_key=ifttt_key(user_id),
                        event_type=REALTIME_EVENT,
                        device_id=entry.device_id,
                        payload={
                            "device": event.payload.get("device"),
                            "trigger_identities": list(chunk),
                        },
                        mergeable=True,
                        due_at=due,
                        merge=(
                            Merge("waiting", identities=chunk, limit=REALTIME_BATCH)
                            if start == 0
                            else None
                        ),
                    )
                )
        return DeliveryPlan(rows=tuple(rows), timeline=(timeline,))


class DeliveryPlanner:
    """Asks every policy about every event of a change and adds the plans up."""

    def __init__(self, policies: Sequence[DeliveryPolicy]) -> None:
        self.policies = tuple(policies)

    def plan(
        self,
        events: Sequence[NewOutboxEvent],
        facts: InterestFacts,
        device: DeviceFacts,
        now: float,
    ) -> DeliveryPlan:
        """Everything ``events`` owe, in event order and, per event, in policy order."""
        plan = NOTHING
        for event in events:
            for policy in self.policies:
                plan = plan + policy.plan(event, facts, device, now)
        return plan


BUILT_IN_POLICIES: Final[tuple[DeliveryPolicy, ...]] = (
    WebhookPolicy(),
    AlexaPolicy(),
    IftttPolicy(),
)
