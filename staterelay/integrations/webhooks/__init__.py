"""Webhooks: signed Standard Webhooks deliveries to the household's own URLs, and IFTTT's
Webhooks service, through a client that refuses private addresses."""

from __future__ import annotations

from staterelay.integrations.webhooks.signing import event_body, sign, signature_headers
from staterelay.integrations.webhooks.sink import WebhookSink
from staterelay.integrations.webhooks.ssrf import AddressRefused, GuardedResolver, check_url

__all__ = [
    "AddressRefused",
    "GuardedResolver",
    "WebhookSink",
    "check_url",
    "event_body",
    "sign",
    "signature_headers",
]
