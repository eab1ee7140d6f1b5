"""Google Home (cloud-to-cloud): fulfillment in, Report State and Request Sync out.

``Google`` is the integration: the ``/google/`` surface with ``POST /google/fulfillment``
(SYNC, QUERY, EXECUTE, DISCONNECT), the ``google`` outbox sink (``HomeGraphSink``) and its
delivery policy, the link records it keeps through core's integration records, its card, the
guided set-up page, ``GET /api/v1/integrations/google``, its metrics and ``doctor`` checks.
Users link through StateRelay's OAuth server with the ``google`` client preset.
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
from staterelay.core.delivery import DeliveryPolicy
from staterelay.core.oauth import RevokedApp
from staterelay.core.oauth_clients import is_google_client
from staterelay.integrations.google import dashboard
from staterelay.integrations.google.checks import doctor_checks
from staterelay.integrations.google.fulfillment import PATH, Fulfillment
from staterelay.integrations.google.homegraph import OUTCOMES, GoogleCounters, HomeGraphSink
from staterelay.integrations.google.links import UNLINKED_IN_STATERELAY, GoogleLinks
from staterelay.integrations.google.policy import GooglePolicy
from staterelay.integrations.google.serviceaccount import HomeGraphToken
from staterelay.ops.checks import Check
from staterelay.settings import Settings

RESULT_FLUSH_INTERVAL: Final = 10.0
SINK_KEY: Final = web.AppKey("staterelay.integrations.google.sink", HomeGraphSink)


class Google(Integration):
    """The Google Home integration."""

    name = "google"
    section = SettingsSection(
        name="google",
        title="Google Home",
        read=lambda settings: settings.google,
        required=("project_id",),
    )
    # Google calls from its own shared addresses for every user: no rate limit. Intent
    # errors are answered by the view; the boundary's own answers are problem+json.
    surfaces = (
        Surface(path="/google/", roles=("google",), limit=RateLimit.NONE),
        Surface(path=dashboard.API_PATH, roles=("api",), limit=RateLimit.CREDENTIAL, exact=True),
    )

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Report State and Request Sync rows, when a service account key is configured."""
        if not settings.google.service_account_file:
            return ()
        return (GooglePolicy(),)

    def doctor_checks(self, settings: Settings) -> Sequence[Check]:
        """The project id and the service account key."""
        return doctor_checks(settings)

    def build(self, context: IntegrationContext) -> Parts:
        """The fulfillment, the sink, the result flush, the card, set-up page and API."""
        core, settings = context.core, context.settings
        links = GoogleLinks(core)
        token = HomeGraphToken(settings, context.http.shared, core.clock)
        counters = GoogleCounters()
        sink = HomeGraphSink(core, settings.google, context.http.shared, token, links, counters)
        view = Fulfillment(core, links)

        async def revoked(app: RevokedApp) -> None:
            if app.client is not None and is_google_client(app.client):
                await links.end(app.tenant_id, app.user_id, UNLINKED_IN_STATERELAY)

        core.oauth.on_revoke(revoked)
        return Parts(
            routes=[web.post(PATH, view.post, name="google-fulfillment"), *dashboard.routes],
            sinks=(sink,),
            periodic=(
                PeriodicTask(
                    "google-report-results", RESULT_FLUSH_INTERVAL, links.flush, wait_first=True
                ),
            ),
            cards=(dashboard.CARD,),
            collectors=(GoogleMetrics(counters),),
            keys={dashboard.LINKS_KEY: links, SINK_KEY: sink},
        )


class GoogleMetrics(Collector):
    """Home Graph calls: Report State and Request Sync, by outcome (every outcome from 0)."""

    def __init__(self, counters: GoogleCounters) -> None:
        self._counters = counters

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """``google_report_state_total`` and ``google_request_sync_total``."""
        for kind, name, documentation in (
            (
                "report",
                "google_report_state",
                "Report State calls (states and doorbell notifications) by outcome: accepted, "
                "retry (tried again later), failed (final), gone (Google no longer knows the "
                "user; the link ended).",
            ),
            ("sync", "google_request_sync", "Request Sync calls to Home Graph by outcome."),
        ):
            family = CounterMetricFamily(name, documentation, labels=("outcome",))
            for outcome in OUTCOMES:
                family.add_metric((outcome,), self._counters.calls[(kind, outcome)])
            yield family


__all__ = ["SINK_KEY", "Google", "GooglePolicy", "HomeGraphSink"]
