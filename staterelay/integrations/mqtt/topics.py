"""The bridge's topic names, and reading a command's topic back.

``<base>/status`` says whether the bridge is up (retained, also its last will);
``<base>/<device_id>/state`` holds each device's state (retained); ``.../set`` and
``.../set/<property>`` take commands, ``.../press`` presses a button; ``.../event`` carries
presses and transitions (never retained); ``<base>/error`` reports commands refused;
``<base>/devices`` lists the devices (retained).
Home Assistant's discovery configs live under ``<prefix>/<component>/<device_id>/<role>/config``
and its own status under ``<prefix>/status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ONLINE: Final = "online"
OFFLINE: Final = "offline"


@dataclass(frozen=True, slots=True)
class Command:
    """What a command topic names: the device, and the one property of a plain-value topic
    (None: a JSON object of properties); ``press`` for a button's press topic."""

    device_id: str
    prop: str | None = None
    press: bool = False


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one bridge: its base topic and Home Assistant's discovery prefix."""

    base: str
    prefix: str

    @property
    def status(self) -> str:
        """The bridge's availability: ``online`` or ``offline`` (its will), retained."""
        return f"{self.base}/status"

    @property
    def error(self) -> str:
        """Where refused commands are reported."""
        return f"{self.base}/error"

    @property
    def devices(self) -> str:
        """The retained index of every device (id, name, type, room)."""
        return f"{self.base}/devices"

    @property
    def ha_status(self) -> str:
        """Home Assistant's own birth and will topic."""
        return f"{self.prefix}/status"

    @property
    def command_filters(self) -> tuple[str, ...]:
        """The subscriptions that receive commands (and nothing the bridge publishes)."""
        return (f"{self.base}/+/set", f"{self.base}/+/set/+", f"{self.base}/+/press")

    @property
    def retained_filters(self) -> tuple[str, ...]:
        """What the bridge reads once after connecting to find topics of deleted devices."""
        return (f"{self.prefix}/+/+/+/config", f"{self.base}/+/state")

    def state(self, device_id: str) -> str:
        """A device's retained state."""
        return f"{self.base}/{device_id}/state"

    def set(self, device_id: str, prop: str | None = None) -> str:
        """A device's command topic, or the plain-value topic of one property."""
        return f"{self.base}/{device_id}/set" + (f"/{prop}" if prop else "")

    def press(self, device_id: str) -> str:
        """A button's press topic."""
        return f"{self.base}/{device_id}/press"

    def event(self, device_id: str) -> str:
        """A device's presses and transitions."""
        return f"{self.base}/{device_id}/event"

    def config(self, component: str, device_id: str, role: str) -> str:
        """One discovery config of a device."""
        return f"{self.prefix}/{component}/{device_id}/{role}/config"

    def command(self, topic: str) -> Command | None:
        """The command ``topic`` names, or None when it is not a command topic."""
        levels = topic.split("/")
        base = self.base.split("/")
        if levels[: len(base)] != base:
            return None
        rest = levels[len(base) :]
        if len(rest) == 2 and rest[1] == "set":
            return Command(rest[0])
        if len(rest) == 3 and rest[1] == "set" and rest[2]:
            return Command(rest[0], prop=rest[2])
        if len(rest) == 2 and rest[1] == "press":
            return Command(rest[0], press=True)
        return None

    def state_device(self, topic: str) -> str | None:
        """The device of a state topic, or None."""
        levels = topic.split("/")
        base = self.base.split("/")
        rest = levels[len(base) :]
        if levels[: len(base)] == base and len(rest) == 2 and rest[1] == "state":
            return rest[0]
        return None

    def config_device(self, topic: str) -> str | None:
        """The device (node id) of a discovery config topic, or None."""
        levels = topic.split("/")
        prefix = self.prefix.split("/")
        rest = levels[len(prefix) :]
        if levels[: len(prefix)] == prefix and len(rest) == 4 and rest[3] == "config":
            return rest[1]
        return None
