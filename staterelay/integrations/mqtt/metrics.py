"""The bridge's Prometheus metrics: messages published, commands, errors, the connection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from staterelay.integrations.mqtt.status import (
    COMMAND_OUTCOMES,
    ERROR_KINDS,
    PUBLISHED_KINDS,
    BridgeStatus,
)


class MqttMetrics(Collector):
    """``mqtt_messages_published``, ``mqtt_commands``, ``mqtt_errors``, ``mqtt_connected``
    and ``mqtt_leader``; every label value from 0."""

    def __init__(self, status: BridgeStatus) -> None:
        self._status = status

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families, read from the bridge's status."""
        status = self._status
        published = CounterMetricFamily(
            "mqtt_messages_published",
            "Messages the MQTT broker accepted from the bridge, by kind.",
            labels=("kind",),
        )
        for kind in PUBLISHED_KINDS:
            published.add_metric((kind,), status.published[kind])
        yield published
        commands = CounterMetricFamily(
            "mqtt_commands",
            "Commands received on the set and press topics, by outcome.",
            labels=("outcome",),
        )
        for outcome in COMMAND_OUTCOMES:
            commands.add_metric((outcome,), status.commands[outcome])
        yield commands
        errors = CounterMetricFamily(
            "mqtt_errors",
            "Bridge errors: lost or refused connections, refused commands, failed publishes.",
            labels=("kind",),
        )
        for kind in ERROR_KINDS:
            errors.add_metric((kind,), status.errors[kind])
        yield errors
        yield GaugeMetricFamily(
            "mqtt_connected",
            "1 while this process is connected to the broker.",
            value=int(status.connected),
        )
        yield GaugeMetricFamily(
            "mqtt_leader",
            "1 while this process runs the bridge (one replica does).",
            value=int(status.leader),
        )
