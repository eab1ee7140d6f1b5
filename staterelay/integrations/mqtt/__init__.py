"""The MQTT bridge: every device of one household on an MQTT broker, with Home Assistant
discovery, for Home Assistant, Node-RED and openHAB (docs/mqtt.md).

``Mqtt`` is the integration: off while ``mqtt.url`` is null. On, every replica hears device
changes and plans the served household's presses and Routine-trigger transitions into the
outbox (``MqttPolicy``); the one replica that leads runs the broker connection (``Bridge``)
and sends those rows (``MqttSink``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

from staterelay.app.integration import Integration, IntegrationContext, Parts, SettingsSection
from staterelay.core.delivery import DeliveryPolicy
from staterelay.integrations.mqtt import dashboard
from staterelay.integrations.mqtt.bridge import Bridge, BridgeTuning
from staterelay.integrations.mqtt.checks import mqtt_checks
from staterelay.integrations.mqtt.delivery import SINK, MqttPolicy, MqttSink
from staterelay.integrations.mqtt.household import Served
from staterelay.integrations.mqtt.metrics import MqttMetrics
from staterelay.ops.checks import Check
from staterelay.settings import Settings

BRIDGE_KEY: Final = dashboard.BRIDGE_KEY


@dataclass(frozen=True, slots=True)
class _ServedFor:
    """The household holder of one settings object (kept alive with it, so its id stays
    its own)."""

    settings: Settings
    served: Served


class Mqtt(Integration):
    """The MQTT bridge integration."""

    name = "mqtt"
    section = SettingsSection(
        name="mqtt",
        title="MQTT",
        read=lambda settings: settings.mqtt,
        required=("url",),
        public_https=False,
    )

    def __init__(self, tuning: BridgeTuning | None = None) -> None:
        self.tuning = tuning
        self._served: dict[int, _ServedFor] = {}

    def served(self, settings: Settings) -> Served:
        """The household holder shared by the policy and the bridge of ``settings``."""
        key = id(settings)
        found = self._served.get(key)
        if found is None or found.settings is not settings:
            found = self._served[key] = _ServedFor(settings, Served())
        return found.served

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Presses and trigger transitions of the served household, while the bridge is on."""
        if settings.mqtt.url is None:
            return ()
        return (MqttPolicy(self.served(settings)),)

    def doctor_checks(self, settings: Settings) -> Sequence[Check]:
        """The broker answers; the household can be told."""
        return mqtt_checks(settings)

    def build(self, context: IntegrationContext) -> Parts:
        """Nothing while off; else the bridge while running, its sink, card, page and metrics."""
        settings = context.settings
        if settings.mqtt.url is None:
            return Parts()
        bridge = Bridge(context.core, settings, self.served(settings), tuning=self.tuning)

        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            unsubscribe = bridge.subscribe()
            await bridge.resolve_household()
            runner = asyncio.create_task(bridge.run(), name="mqtt-bridge")
            try:
                yield
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
                for stop in unsubscribe:
                    stop()

        return Parts(
            routes=dashboard.routes,
            sinks=(MqttSink(bridge),),
            cards=(dashboard.CARD,),
            collectors=(MqttMetrics(bridge.status),),
            running=running,
            keys={BRIDGE_KEY: bridge},
        )


__all__ = ["SINK", "Bridge", "BridgeTuning", "Mqtt"]
