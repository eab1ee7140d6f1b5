"""The Alexa Smart Home skill: directives in, proactive events out, and the Lambda relay.

``Alexa`` is the integration: the ``/alexa/`` surface with ``POST /alexa/smart_home``, the
``alexa`` outbox sink, the periodic write of report results, its card and set-up page, and
its metrics. What it keeps for the life of an application is under ``ALEXA_KEY``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from staterelay.app.integration import (
    Integration,
    IntegrationContext,
    Parts,
    PeriodicTask,
    RateLimit,
    SettingsSection,
    Surface,
)
from staterelay.core.counters import Counters
from staterelay.core.crypto import relay_secret
from staterelay.core.delivery import AlexaPolicy, DeliveryPolicy
from staterelay.integrations.alexa import dashboard
from staterelay.integrations.alexa.change_report import ChangeReportSink
from staterelay.integrations.alexa.runtime import ALEXA_KEY, AlexaRuntime
from staterelay.integrations.alexa.views import PATH
from staterelay.settings import Settings

REPORT_FLUSH_INTERVAL: Final = 10.0
FAILURE_OUTCOMES: Final = ("retry", "dead")


class Alexa(Integration):
    """The Alexa integration."""

    name = "alexa"
    section = SettingsSection(
        name="alexa",
        title="Alexa",
        read=lambda settings: settings.alexa,
        # The relay secret is derived from the instance secret when not set: not required.
        required=("messaging_client_id", "messaging_client_secret"),
    )
    # Amazon calls from a few shared addresses for every user: no rate limit. Errors are
    # ErrorResponses the view writes itself; the boundary's own answers are problem+json.
    surfaces = (Surface(path="/alexa/", roles=("alexa",), limit=RateLimit.NONE),)

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Every linked Alexa account hears of changes, presses and lifecycle events."""
        return (AlexaPolicy(),)

    def build(self, context: IntegrationContext) -> Parts:
        """The directive endpoint, the sink, the report flush, the card and set-up page."""
        settings, core = context.settings, context.core
        relay = settings.alexa.relay_secret or relay_secret(context.instance_secret)
        alexa = AlexaRuntime(core, settings, context.http, relay)
        return Parts(
            routes=[web.post(PATH, alexa.view.post, name="alexa-smart-home"), *dashboard.routes],
            sinks=(alexa.sink,),
            periodic=(
                # The latest report result of each grant, written every few seconds.
                PeriodicTask(
                    "alexa-report-results",
                    REPORT_FLUSH_INTERVAL,
                    core.alexa.flush_reports,
                    wait_first=True,
                ),
            ),
            cards=(dashboard.CARD,),
            collectors=(AlexaEvents(core.counters),),
            keys={ALEXA_KEY: alexa},
        )


class AlexaEvents(Collector):
    """Events the Alexa event gateway accepted, and the attempts that failed."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """``alexa_changereports_sent`` and ``alexa_changereport_failures``."""
        counters = self._counters
        sent = sum(
            count
            for key, count in counters.deliveries.items()
            if key.sink == "alexa" and key.outcome == "delivered" and key.sent
        )
        yield CounterMetricFamily(
            "alexa_changereports_sent",
            "Events (ChangeReports and discovery updates) the Alexa event gateway accepted.",
            value=sent,
        )
        failures = CounterMetricFamily(
            "alexa_changereport_failures",
            "Alexa event attempts that failed, by outcome (retry: tried again later, dead).",
            labels=("outcome",),
        )
        alexa = counters.deliveries_of("alexa")
        for outcome in FAILURE_OUTCOMES:
            failures.add_metric((outcome,), alexa.get(outcome, 0))
        yield failures


__all__ = ["ALEXA_KEY", "Alexa", "AlexaRuntime", "ChangeReportSink"]
