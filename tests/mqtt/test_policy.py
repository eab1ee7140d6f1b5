"""The bridge's delivery policy: which changes become outbox rows, for which household."""

from __future__ import annotations

from staterelay.core.delivery import NOTHING, DeviceFacts, InterestFacts
from staterelay.core.records import NewOutboxEvent
from staterelay.integrations.mqtt.delivery import MqttPolicy
from staterelay.integrations.mqtt.household import Served

FACTS = InterestFacts()
OURS = "ten_ours"


def device(kind: str, tenant: str = OURS, **options: object) -> DeviceFacts:
    """A device of ``tenant`` as a change leaves it."""
    return DeviceFacts(device_id="dev_1", type=kind, options=options, version=3, tenant_id=tenant)


def change(prop: str, new: object) -> NewOutboxEvent:
    """A state change event of dev_1."""
    return NewOutboxEvent("state.changed", "dev_1", {"property": prop, "new": new})


PRESS = NewOutboxEvent("button.pressed", "dev_1", {"source": "api"})


def test_presses_and_trigger_transitions_of_the_served_household_are_rows() -> None:
    """One row each, keyed per device, for a press, a detection and a trigger switch's power."""
    policy = MqttPolicy(Served(tenant_id=OURS))
    for event, facts in (
        (PRESS, device("button")),
        (change("detection", "DETECTED"), device("contact_sensor")),
        (change("power", "ON"), device("switch", routine_trigger=True)),
    ):
        plan = policy.plan(event, FACTS, facts, 1.0)
        assert [(r.sink, r.destination, r.ordering_key) for r in plan.rows] == [
            ("mqtt", "broker", "mqtt:dev_1")
        ]
        assert not plan.rows[0].mergeable


def test_plain_changes_other_households_and_test_sends_are_not() -> None:
    """A plain switch, a dimmer's level, another household's press, a test send, and any
    change before the household is known owe the broker nothing through the outbox."""
    policy = MqttPolicy(Served(tenant_id=OURS))
    assert policy.plan(change("power", "ON"), FACTS, device("switch"), 1.0) == NOTHING
    assert policy.plan(change("brightness", 40), FACTS, device("dimmer"), 1.0) == NOTHING
    assert policy.plan(PRESS, FACTS, device("button", tenant="ten_other"), 1.0) == NOTHING
    test_send = NewOutboxEvent("button.pressed", "dev_1", {}, only_destination="wh_1")
    assert policy.plan(test_send, FACTS, device("button"), 1.0) == NOTHING
    unresolved = MqttPolicy(Served())
    assert unresolved.plan(PRESS, FACTS, device("button"), 1.0) == NOTHING
