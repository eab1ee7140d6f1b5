"""Webhooks: signed Standard Webhooks deliveries to the household's own URLs, and IFTTT's
Webhooks service, through the application's SSRF-guarded HTTP client.

``Webhooks`` is the integration: the ``webhook`` outbox sink, the card with the list of
webhooks, the set-up page, and its metrics. It serves no URL surface of its own: webhooks
are managed through the API and the dashboard, which are core's.
"""

from __future__ import annotations

from collections.abc import Sequence

from staterelay.app.integration import Integration, IntegrationContext, Parts, SinkOutcomes
from staterelay.core.delivery import DeliveryPolicy, WebhookPolicy
from staterelay.integrations.webhooks import dashboard
from staterelay.integrations.webhooks.signing import event_body, sign, signature_headers
from staterelay.integrations.webhooks.sink import WebhookSink
from staterelay.settings import Settings


class Webhooks(Integration):
    """The webhooks integration."""

    name = "webhooks"

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Every enabled webhook whose filters match hears of the event."""
        return (WebhookPolicy(),)

    def build(self, context: IntegrationContext) -> Parts:
        """The sink (through the guarded client), the card and the set-up page."""
        core, hooks = context.core, context.settings.webhooks
        sink = WebhookSink(
            core,
            timeout_seconds=hooks.timeout_seconds,
            max_response_bytes=hooks.max_response_bytes,
            policy=core.webhooks.policy,
            http=context.http,
        )
        return Parts(
            routes=dashboard.routes,
            sinks=(sink,),
            cards=(dashboard.CARD,),
            collectors=(
                SinkOutcomes(
                    core.counters,
                    name="webhook_deliveries",
                    sink=sink.name,
                    documentation="Webhook delivery attempts, by outcome.",
                ),
            ),
        )


__all__ = ["WebhookSink", "Webhooks", "event_body", "sign", "signature_headers"]
