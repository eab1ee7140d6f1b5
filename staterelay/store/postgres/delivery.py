"""Delivery on PostgreSQL: interest facts and devices as the server-side functions send them,
and delivery plans and changes as they take them (see migration 0010).

The rules are core's; these translate between records and the JSON the functions speak, so
that a change, a read or a batch of results is one round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from staterelay.core.delivery import (
    DeliveryPlan,
    IftttWatch,
    InterestFacts,
    PlannedRow,
    TimelineEvent,
    WebhookInterest,
)
from staterelay.core.records import DeliveryOutcome, Device, NewActivity, PropertyState
from staterelay.core.records.ifttt import DEFAULT_DEBOUNCE_SECONDS, Threshold
from staterelay.store.postgres.engine import clean_text


def facts_from(data: Mapping[str, Any]) -> InterestFacts:
    """``InterestFacts`` from ``sr_interest_facts_of``'s JSON."""
    thresholds: dict[str, tuple[Threshold, ...]] = {}
    for device_id, direction, value in data.get("thresholds") or ():
        thresholds[device_id] = (*thresholds.get(device_id, ()), _threshold(direction, value))
    realtime = data.get("realtime")
    links: dict[str, tuple[str, ...]] = {}
    for integration, key in data.get("links") or ():
        links[integration] = (*links.get(integration, ()), key)
    return InterestFacts(
        version=int(data.get("version") or 0),
        alexa_grants=tuple(data.get("alexa_grants") or ()),
        webhooks=tuple(
            WebhookInterest(
                webhook_id=hook["id"],
                event_types=None if hook["event_types"] is None else frozenset(hook["event_types"]),
                device_ids=None if hook["device_ids"] is None else frozenset(hook["device_ids"]),
            )
            for hook in data.get("webhooks") or ()
        ),
        ifttt_linked=bool(data.get("ifttt_linked")),
        ifttt_watches=tuple(
            IftttWatch(
                user_id=user_id,
                identity=identity,
                device_id=device_id,
                kind=kind,
                threshold=None if direction is None else _threshold(direction, value),
            )
            for user_id, identity, device_id, kind, direction, value in data.get("watches") or ()
        ),
        thresholds=thresholds,
        realtime_enabled=realtime is None or bool(realtime[0]),
        realtime_debounce=DEFAULT_DEBOUNCE_SECONDS if realtime is None else float(realtime[1]),
        links=links,
    )


def device_from(data: Mapping[str, Any]) -> Device:
    """A ``Device`` from ``sr_device_of``'s JSON."""
    return Device(
        seq=int(data["seq"]),
        id=data["id"],
        tenant_id=data["tenant_id"],
        type=data["type"],
        name=data["name"],
        description=data["description"],
        options=data["options"] or {},
        properties={
            name: PropertyState(value=value, changed_at=float(changed_at))
            for name, (value, changed_at) in sorted((data.get("properties") or {}).items())
        },
        version=int(data["version"]),
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
        room=data.get("room") or "",
    )


def plan_json(plan: DeliveryPlan) -> dict[str, Any]:
    """The plan's rows and timeline events as ``sr_queue_rows``/``sr_append_timeline`` take them."""
    return {
        "rows": [_row(row) for row in plan.rows],
        "timeline": [_timeline(event) for event in plan.timeline],
    }


def activity_json(activity: NewActivity) -> dict[str, Any]:
    """One activity row as the functions insert it."""
    return {
        "device_id": activity.device_id,
        "device_name": activity.device_name,
        "kind": activity.kind,
        "source": activity.source,
        "actor": clean_text(activity.actor),
        "cause": clean_text(activity.cause),
        "property": activity.property,
        "old_value": activity.old_value,
        "new_value": activity.new_value,
        "detail": dict(activity.detail or {}),
    }


def outcomes_json(outcomes: Sequence[DeliveryOutcome]) -> list[dict[str, Any]]:
    """Delivery results as ``sr_record_deliveries`` takes them."""
    return [
        {
            "id": outcome.item.id,
            "tenant_id": outcome.item.tenant_id,
            "sink": outcome.item.sink,
            "destination": outcome.item.destination,
            "ordering_key": outcome.item.ordering_key,
            "event_id": outcome.item.event_id,
            "event_type": outcome.item.event_type,
            "status": outcome.status,
            "attempted": 0 if outcome.merged_into is not None else 1,
            "attempt": outcome.item.attempts + 1,
            "next_attempt_at": outcome.next_attempt_at,
            "status_code": outcome.status_code,
            "error": clean_text(outcome.error),
            "merged_into": outcome.merged_into,
            "duration_ms": outcome.duration_ms,
            "activity": None if outcome.activity is None else activity_json(outcome.activity),
        }
        for outcome in outcomes
    ]


def _row(row: PlannedRow) -> dict[str, Any]:
    merge = row.merge
    return {
        "sink": row.sink,
        "destination": row.destination,
        "ordering_key": row.ordering_key,
        "event_type": row.event_type,
        "device_id": row.device_id,
        "payload": dict(row.payload),
        "mergeable": row.mergeable,
        "due_at": row.due_at,
        "merge": None
        if merge is None
        else {
            "kind": merge.kind,
            "version": merge.version,
            "identities": list(merge.identities),
            "limit": merge.limit,
        },
    }


def _timeline(event: TimelineEvent) -> dict[str, Any]:
    return {
        "device_id": event.device_id,
        "device_name": event.device_name,
        "kind": event.kind,
        "property": event.property,
        "old": event.old,
        "new": event.new,
        "old_number": event.old_number,
        "new_number": event.new_number,
        "cause": clean_text(event.cause),
        "source": clean_text(event.source),
        "crossed": list(event.crossed),
    }


def _threshold(direction: str, value: Any) -> Threshold:
    return Threshold("above" if direction == "above" else "below", float(value))
