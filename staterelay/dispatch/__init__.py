"""Outbox delivery: the dispatcher that hands outbox rows to the integrations' sinks."""

from __future__ import annotations

from staterelay.core.sinks import Sink, SinkResult
from staterelay.dispatch.backoff import retry_delay
from staterelay.dispatch.dispatcher import Dispatcher, DispatcherConfig

__all__ = [
    "Dispatcher",
    "DispatcherConfig",
    "Sink",
    "SinkResult",
    "retry_delay",
]
