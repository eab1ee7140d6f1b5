"""Core's delivery rules, as pure functions: events and a household's facts in, a plan out.

No database here: the store contract tests check that the stores carry plans out.
"""

from __future__ import annotations

from typing import Any

from staterelay.core.delivery import (
    BUILT_IN_POLICIES,
    AlexaPolicy,
    DeliveryPlan,
    DeliveryPlanner,
    DeviceFacts,
    IftttPolicy,
    IftttWatch,
    InterestFacts,
    Merge,
    PlannedRow,
    WebhookInterest,
    WebhookPolicy,
)
from staterelay.core.records import NewOutboxEvent
from staterelay.core.records.ifttt import REALTIME_BATCH, Threshold

NOW = 1_800_000_000.25
SWITCH = DeviceFacts(device_id="dev_sw", type="switch", options={}, version=7)
TRIGGER_SWITCH = DeviceFacts(
    device_id="dev_sw", type="switch", options={"routine_trigger": True}, version=7
)
THERMOMETER = DeviceFacts(device_id="dev_th", type="temperature_sensor", options={}, version=3)


def state(device_id: str, prop: str, old: Any, new: Any) -> NewOutboxEvent:
    """A state.changed event as DeviceService writes it."""
    return NewOutboxEvent(
        event_type="state.changed",
        device_id=device_id,
        payload={
            "device": {"id": device_id, "name": "Lamp", "type": "switch"},
            "property": prop,
            "old": old,
            "new": new,
            "cause": "voice",
            "source": "alexa",
        },
    )


def temperature(old: float, new: float) -> NewOutboxEvent:
    """A thermometer reading moving from ``old`` to ``new`` degrees Celsius."""
    return state(
        "dev_th",
        "temperature",
        {"value": old, "scale": "CELSIUS"},
        {"value": new, "scale": "CELSIUS"},
    )


# Alexa ---------------------------------------------------------------------------------------


def test_alexa_owes_nothing_without_a_linked_account() -> None:
    plan = AlexaPolicy().plan(state("dev_sw", "power", "OFF", "ON"), InterestFacts(), SWITCH, NOW)
    assert plan.rows == ()
    assert plan.timeline == ()


def test_alexa_owes_one_row_per_linked_account_stamped_with_time_and_version() -> None:
    facts = InterestFacts(alexa_grants=("agr_1", "agr_2"))
    plan = AlexaPolicy().plan(state("dev_sw", "power", "OFF", "ON"), facts, SWITCH, NOW)
    assert [(row.destination, row.ordering_key) for row in plan.rows] == [
        ("agr_1", "alexa:agr_1:dev_sw"),
        ("agr_2", "alexa:agr_2:dev_sw"),
    ]
    row = plan.rows[0]
    assert (row.sink, row.event_type, row.device_id) == ("alexa", "state.changed", "dev_sw")
    assert row.payload["at"] == NOW
    assert row.payload["device_version"] == 7
    assert row.payload["new"] == "ON"
    # an ordinary change may be carried by the endpoint's newest queued report
    assert row.mergeable
    assert row.merge == Merge("tail", version=7)


def test_a_routine_trigger_transition_is_never_merged() -> None:
    facts = InterestFacts(alexa_grants=("agr_1",))
    policy = AlexaPolicy()
    [power] = policy.plan(state("dev_sw", "power", "OFF", "ON"), facts, TRIGGER_SWITCH, NOW).rows
    assert not power.mergeable
    assert power.merge is None
    sensor = DeviceFacts(device_id="dev_door", type="contact_sensor", options={}, version=2)
    door = state("dev_door", "detection", "NOT_DETECTED", "DETECTED")
    [detection] = policy.plan(door, facts, sensor, NOW).rows
    assert not detection.mergeable
    assert detection.merge is None


def test_presses_and_lifecycle_reach_alexa_unmerged_and_other_events_do_not() -> None:
    facts = InterestFacts(alexa_grants=("agr_1",))
    policy = AlexaPolicy()
    for event_type in ("button.pressed", "device.created", "device.updated", "device.deleted"):
        event = NewOutboxEvent(event_type, "dev_sw", {"device": {"id": "dev_sw"}})
        [row] = policy.plan(event, facts, SWITCH, NOW).rows
        assert row.event_type == event_type
        assert row.merge is None
        assert not row.mergeable
    test_send = NewOutboxEvent("webhook.test", None, {}, only_destination="whk_1")
    assert policy.plan(test_send, facts, SWITCH, NOW).rows == ()
    aimed = NewOutboxEvent("state.changed", "dev_sw", {}, only_destination="whk_1")
    assert policy.plan(aimed, facts, SWITCH, NOW).rows == ()


def test_a_deleted_device_still_gets_its_delete_report() -> None:
    gone = DeviceFacts(device_id="dev_sw", type=None, options={}, version=None)
    facts = InterestFacts(alexa_grants=("agr_1",))
    event = NewOutboxEvent("device.deleted", "dev_sw", {"device": {"id": "dev_sw"}})
    [row] = AlexaPolicy().plan(event, facts, gone, NOW).rows
    assert row.ordering_key == "alexa:agr_1:dev_sw"
    assert not row.mergeable


# webhooks ------------------------------------------------------------------------------------


def test_webhooks_hear_what_their_filters_let_through() -> None:
    facts = InterestFacts(
        webhooks=(
            WebhookInterest("whk_all"),
            WebhookInterest("whk_presses", event_types=frozenset({"button.pressed"})),
            WebhookInterest("whk_other_device", device_ids=frozenset({"dev_x"})),
            WebhookInterest("whk_this_device", device_ids=frozenset({"dev_sw"})),
        )
    )
    rows = WebhookPolicy().plan(state("dev_sw", "power", "OFF", "ON"), facts, SWITCH, NOW).rows
    assert [row.destination for row in rows] == ["whk_all", "whk_this_device"]
    assert rows[0].ordering_key == "webhook:whk_all:dev_sw"
    assert not rows[0].mergeable
    assert rows[0].merge is None
    assert "at" not in rows[0].payload  # webhooks carry the event as core wrote it


def test_a_test_send_reaches_only_the_webhook_it_names_whatever_its_filters() -> None:
    facts = InterestFacts(
        webhooks=(
            WebhookInterest("whk_1", event_types=frozenset({"button.pressed"})),
            WebhookInterest("whk_2"),
        )
    )
    event = NewOutboxEvent("webhook.test", None, {"hello": "world"}, only_destination="whk_1")
    [row] = WebhookPolicy().plan(event, facts, SWITCH, NOW).rows
    assert (row.destination, row.ordering_key) == ("whk_1", "webhook:whk_1:")
    missing = NewOutboxEvent("webhook.test", None, {}, only_destination="whk_gone")
    assert WebhookPolicy().plan(missing, facts, SWITCH, NOW).rows == ()


# IFTTT ---------------------------------------------------------------------------------------


def test_an_unlinked_household_keeps_no_timeline() -> None:
    facts = InterestFacts(realtime_enabled=True)
    plan = IftttPolicy().plan(state("dev_sw", "power", "OFF", "ON"), facts, SWITCH, NOW)
    assert plan.rows == ()
    assert plan.timeline == ()


def test_a_linked_household_appends_every_followed_change_to_its_timeline() -> None:
    facts = InterestFacts(ifttt_linked=True, realtime_enabled=False)
    plan = IftttPolicy().plan(state("dev_sw", "power", "OFF", "ON"), facts, SWITCH, NOW)
    assert plan.rows == ()
    [event] = plan.timeline
    assert (event.device_id, event.kind, event.old, event.new) == ("dev_sw", "power", "OFF", "ON")
    assert (event.cause, event.source, event.device_name) == ("voice", "alexa", "Lamp")
    unfollowed = state("dev_sw", "color", "red", "blue")
    assert IftttPolicy().plan(unfollowed, facts, SWITCH, NOW).timeline == ()


def test_readings_name_the_thresholds_they_cross() -> None:
    above, below = Threshold("above", 20.0), Threshold("below", 20.0)
    facts = InterestFacts(ifttt_linked=True, thresholds={"dev_th": (above, below)})
    policy = IftttPolicy()
    [up] = policy.plan(temperature(19.0, 21.0), facts, THERMOMETER, NOW).timeline
    assert up.crossed == (above.variant,)
    assert (up.old_number, up.new_number) == (19.0, 21.0)
    [down] = policy.plan(temperature(21.0, 19.5), facts, THERMOMETER, NOW).timeline
    assert down.crossed == (below.variant,)
    [still] = policy.plan(temperature(21.0, 25.0), facts, THERMOMETER, NOW).timeline
    assert still.crossed == ()


def test_realtime_rows_per_user_due_at_the_end_of_the_debounce_window() -> None:
    facts = InterestFacts(
        ifttt_linked=True,
        realtime_enabled=True,
        realtime_debounce=2.0,
        ifttt_watches=(
            IftttWatch("usr_b", "ti-b1", "dev_sw", "power"),
            IftttWatch("usr_a", "ti-a2", "dev_sw", "power"),
            IftttWatch("usr_a", "ti-a1", "dev_sw", "power"),
            IftttWatch("usr_a", "ti-other-device", "dev_x", "power"),
            IftttWatch("usr_a", "ti-other-kind", "dev_sw", "brightness"),
        ),
    )
    plan = IftttPolicy().plan(state("dev_sw", "power", "OFF", "ON"), facts, SWITCH, NOW)
    assert [(row.ordering_key, row.payload["trigger_identities"]) for row in plan.rows] == [
        ("ifttt:usr_a", ["ti-a1", "ti-a2"]),
        ("ifttt:usr_b", ["ti-b1"]),
    ]
    row = plan.rows[0]
    assert row.due_at == 1_800_000_002.0  # NOW rounded up to the 2-second window
    assert row.mergeable
    assert row.merge == Merge("waiting", identities=("ti-a1", "ti-a2"), limit=REALTIME_BATCH)
    assert (row.sink, row.event_type, row.destination) == ("ifttt", "ifttt.realtime", "dev_sw")
    assert len(plan.timeline) == 1


def test_a_threshold_watch_is_nudged_only_when_its_threshold_is_crossed() -> None:
    above = Threshold("above", 20.0)
    facts = InterestFacts(
        ifttt_linked=True,
        realtime_enabled=True,
        thresholds={"dev_th": (above,)},
        ifttt_watches=(
            IftttWatch("usr_a", "ti-hot", "dev_th", "sensor", threshold=above),
            IftttWatch("usr_a", "ti-any", "dev_th", "sensor"),
        ),
    )
    policy = IftttPolicy()
    crossing = policy.plan(temperature(19.0, 21.0), facts, THERMOMETER, NOW).rows
    assert [row.payload["trigger_identities"] for row in crossing] == [["ti-any", "ti-hot"]]
    staying = policy.plan(temperature(21.0, 22.0), facts, THERMOMETER, NOW).rows
    assert [row.payload["trigger_identities"] for row in staying] == [["ti-any"]]


def test_more_identities_than_one_request_holds_split_into_rows() -> None:
    watches = tuple(
        IftttWatch("usr_a", f"ti-{n:05d}", "dev_sw", "power") for n in range(REALTIME_BATCH + 5)
    )
    facts = InterestFacts(ifttt_linked=True, realtime_enabled=True, ifttt_watches=watches)
    rows = IftttPolicy().plan(state("dev_sw", "power", "OFF", "ON"), facts, SWITCH, NOW).rows
    assert [len(row.payload["trigger_identities"]) for row in rows] == [REALTIME_BATCH, 5]
    assert rows[0].merge is not None
    assert rows[1].merge is None
    everyone = [i for row in rows for i in row.payload["trigger_identities"]]
    assert everyone == sorted(w.identity for w in watches)


# the planner ---------------------------------------------------------------------------------


def test_the_planner_adds_every_policy_up_in_event_then_policy_order() -> None:
    facts = InterestFacts(
        alexa_grants=("agr_1",),
        webhooks=(WebhookInterest("whk_1"),),
        ifttt_linked=True,
    )
    events = (state("dev_sw", "power", "OFF", "ON"), state("dev_sw", "power", "ON", "OFF"))
    plan = DeliveryPlanner(BUILT_IN_POLICIES).plan(events, facts, SWITCH, NOW)
    assert [(row.sink, row.payload["new"]) for row in plan.rows] == [
        ("webhook", "ON"),
        ("alexa", "ON"),
        ("webhook", "OFF"),
        ("alexa", "OFF"),
    ]
    assert [event.new for event in plan.timeline] == ["ON", "OFF"]


def test_a_planner_without_policies_owes_nothing() -> None:
    facts = InterestFacts(alexa_grants=("agr_1",), webhooks=(WebhookInterest("whk_1"),))
    plan = DeliveryPlanner(()).plan([state("dev_sw", "power", "OFF", "ON")], facts, SWITCH, NOW)
    assert plan.rows == ()
    assert plan.timeline == ()


class _EverythingToOneSink:
    """A policy of a new integration: one row per event, for the planner to add."""

    sink = "extra"

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        return DeliveryPlan(
            rows=(
                PlannedRow(
                    sink="extra",
                    destination="all",
                    ordering_key=f"extra:{event.device_id}",
                    event_type=event.event_type,
                    device_id=event.device_id,
                    payload=event.payload,
                ),
            )
        )


def test_an_integration_adds_its_policy_without_touching_the_others() -> None:
    planner = DeliveryPlanner((*BUILT_IN_POLICIES, _EverythingToOneSink()))
    facts = InterestFacts(alexa_grants=("agr_1",))
    plan = planner.plan([state("dev_sw", "power", "OFF", "ON")], facts, SWITCH, NOW)
    assert [row.sink for row in plan.rows] == ["alexa", "extra"]
