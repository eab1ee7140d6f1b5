"""Outbox delivery: the dispatcher, its pluggable sinks and the guarded webhook client."""

from __future__ import annotations

from staterelay.core.sinks import Sink, SinkResult
from staterelay.dispatch.backoff import parse_retry_after, retry_delay
from staterelay.dispatch.dispatcher import Dispatcher, DispatcherConfig
from staterelay.dispatch.signing import event_body, sign, signature_headers
from staterelay.dispatch.ssrf import AddressRefused, GuardedResolver, check_url
from staterelay.dispatch.webhook_sink import WebhookSink

__all__ = [
    "AddressRefused",
    "Dispatcher",
    "DispatcherConfig",
    "GuardedResolver",
    "Sink",
    "SinkResult",
    "WebhookSink",
    "check_url",
    "event_body",
    "parse_retry_after",
    "retry_delay",
    "sign",
    "signature_headers",
]
