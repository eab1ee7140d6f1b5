"""What the bridge has done in this process: for its card, its API status and its metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from staterelay.core.clock import iso

PUBLISHED_KINDS: Final = ("state", "config", "event", "status", "error", "clear", "index")
COMMAND_OUTCOMES: Final = ("applied", "refused", "ignored")
ERROR_KINDS: Final = ("connection", "command", "publish")


@dataclass(slots=True)
class BridgeStatus:
    """What the card, the API and the metrics show of the bridge in this process."""

    leader: bool = False
    connected: bool = False
    connected_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    discovery_at: float | None = None
    devices: int = 0
    last_command_at: float | None = None
    last_command_device: str | None = None
    published: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        """The status as ``/api/v1/integrations/mqtt`` answers it."""
        return {
            "leader": self.leader,
            "connected": self.connected,
            "connected_at": _iso(self.connected_at),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "discovery_published_at": _iso(self.discovery_at),
            "devices": self.devices,
            "last_command_at": _iso(self.last_command_at),
            "last_command_device": self.last_command_device,
            "published": {kind: self.published[kind] for kind in PUBLISHED_KINDS},
            "commands": {outcome: self.commands[outcome] for outcome in COMMAND_OUTCOMES},
            "errors": {kind: self.errors[kind] for kind in ERROR_KINDS},
        }


def _iso(moment: float | None) -> str | None:
    return None if moment is None else iso(moment)
