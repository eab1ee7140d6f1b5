"""Outbox delivery (placeholder being built)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from staterelay.core import Core
from staterelay.core.netpolicy import AddressPolicy


@dataclass(frozen=True)
class DispatcherConfig:
    """Dispatcher tuning."""

    owner: str
    max_age_seconds: float = 72 * 3600.0
    max_attempts: int = 20
    concurrency_per_destination: int = 2
    release_all_on_start: bool = True
    lease_seconds: float = 60.0


class WebhookSink:
    """Placeholder."""

    def __init__(
        self, core: Core, *, timeout_seconds: float, max_response_bytes: int, policy: AddressPolicy
    ) -> None:
        self.core = core

    async def close(self) -> None:
        """Close."""


class Dispatcher:
    """Placeholder."""

    def __init__(self, core: Core, sinks: Mapping[str, Any], *, config: DispatcherConfig) -> None:
        self.core = core

    async def start(self) -> None:
        """Start."""

    async def stop(self) -> None:
        """Stop."""

    def wake(self) -> None:
        """Wake."""
