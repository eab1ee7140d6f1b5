"""Presses and Routine-trigger transitions through the outbox: the policy and the sink.

Plain state goes to the broker straight from the bus (retained, and all of it again on
every connect). A press or a transition that starts automations must not be lost while
the broker is away, so it is an outbox row: in order per device (``mqtt:<device_id>``),
retried with backoff until the broker takes it, published at QoS 1 and never retained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from staterelay.core.delivery import (
    NOTHING,
    DeliveryPlan,
    DeviceFacts,
    InterestFacts,
    PlannedRow,
)
from staterelay.core.delivery.keys import is_routine_trigger
from staterelay.core.records import NewOutboxEvent, OutboxItem
from staterelay.core.sinks import SinkResult
from staterelay.integrations.mqtt.household import Served

if TYPE_CHECKING:
    from staterelay.integrations.mqtt.bridge import Bridge

SINK: Final = "mqtt"
DESTINATION: Final = "broker"


def mqtt_key(device_id: str) -> str:
    """One device's events, in order."""
    return f"{SINK}:{device_id}"


class MqttPolicy:
    """The served household's presses and Routine-trigger transitions are owed to the broker."""

    sink = SINK

    def __init__(self, served: Served) -> None:
        self._served = served

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """One row per press or trigger transition of a device of the served household."""
        device_id = event.device_id
        if (
            device_id is None
            or event.only_destination is not None
            or self._served.tenant_id is None
            or device.tenant_id != self._served.tenant_id
        ):
            return NOTHING
        if event.event_type != "button.pressed" and not (
            event.event_type == "state.changed"
            and device.type is not None
            and is_routine_trigger(device.type, device.options, event.payload.get("property"))
        ):
            return NOTHING
        row = PlannedRow(
            sink=SINK,
            destination=DESTINATION,
            ordering_key=mqtt_key(device_id),
            event_type=event.event_type,
            device_id=device_id,
            payload=event.payload,
        )
        return DeliveryPlan(rows=(row,))


class MqttSink:
    """Publishes outbox rows on the device's event topic through the bridge's connection."""

    name = SINK

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def ready(self) -> bool:
        """Rows are sent only by the process that runs the bridge (the leader)."""
        return self._bridge.leading

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """One attempt: fails (and is retried in order) while the broker is not connected."""
        error = await self._bridge.publish_event(item)
        if error is not None:
            return SinkResult(delivered=False, error=error)
        return SinkResult(delivered=True)

    async def close(self) -> None:
        """The bridge owns the connection."""
