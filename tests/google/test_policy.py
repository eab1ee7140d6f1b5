"""``GooglePolicy`` as pure rules: who is owed a row, on which key, what may merge."""

from __future__ import annotations

from typing import Any

from staterelay.core.delivery import DeviceFacts, InterestFacts
from staterelay.core.records import NewOutboxEvent
from staterelay.integrations.google.policy import GooglePolicy

NOW = 1_700_000_000.0
FACTS = InterestFacts(version=3, links={"google": ("usr_a", "usr_b")})


def event(kind: str, **payload: Any) -> NewOutboxEvent:
    """An event about dev_1."""
    return NewOutboxEvent(event_type=kind, device_id="dev_1", payload=payload)


def device(kind: str = "switch", **options: Any) -> DeviceFacts:
    """The device as the change leaves it."""
    return DeviceFacts(device_id="dev_1", type=kind, options=options, version=7)


def test_every_linked_user_gets_a_row_on_their_device_key() -> None:
    plan = GooglePolicy().plan(event("state.changed", property="power"), FACTS, device(), NOW)
    assert [(row.destination, row.ordering_key) for row in plan.rows] == [
        ("usr_a", "google:usr_a:dev_1"),
        ("usr_b", "google:usr_b:dev_1"),
    ]
    row = plan.rows[0]
    assert row.sink == "google"
    assert row.payload["device_version"] == 7
    assert row.payload["at"] == NOW
    assert row.mergeable
    assert row.merge is not None
    assert row.merge.kind == "tail"


def test_nothing_without_links_or_for_test_sends() -> None:
    policy = GooglePolicy()
    assert policy.plan(event("state.changed"), InterestFacts(), device(), NOW).rows == ()
    other = InterestFacts(links={"mqtt": ("x",)})
    assert policy.plan(event("state.changed"), other, device(), NOW).rows == ()
    test_send = NewOutboxEvent(
        event_type="webhook.test", device_id=None, payload={}, only_destination="whk_1"
    )
    assert policy.plan(test_send, FACTS, device(), NOW).rows == ()


def test_triggers_and_presses_never_merge() -> None:
    policy = GooglePolicy()
    motion = policy.plan(
        event("state.changed", property="detection"), FACTS, device("motion_sensor"), NOW
    )
    routine = policy.plan(
        event("state.changed", property="power"), FACTS, device(routine_trigger=True), NOW
    )
    press = policy.plan(event("button.pressed"), FACTS, device("button"), NOW)
    for plan in (motion, routine, press):
        assert plan.rows
        assert all(not row.mergeable and row.merge is None for row in plan.rows)


def test_request_sync_only_for_what_google_shows() -> None:
    policy = GooglePolicy()
    for kind in ("device.created", "device.deleted"):
        rows = policy.plan(event(kind), FACTS, device(), NOW).rows
        assert [row.event_type for row in rows] == [kind, kind]
        assert not any(row.mergeable for row in rows)
    for changed in (["name"], ["room"], ["options"], ["description", "name"]):
        assert policy.plan(event("device.updated", changed=changed), FACTS, device(), NOW).rows
    assert not policy.plan(
        event("device.updated", changed=["description"]), FACTS, device(), NOW
    ).rows
    assert not policy.plan(event("activity.other"), FACTS, device(), NOW).rows
