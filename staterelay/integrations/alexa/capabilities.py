"""Alexa interfaces, one class each: how a device's state reads as discovery and properties.

A capability reads device properties (``sources``) and serializes them as Alexa properties.
Values are passed in as a mapping of device property name to ``PropertyState``, so the same
code serializes the current state (responses, context) and a past value (the change a
ChangeReport carries).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from staterelay.core.clock import iso
from staterelay.core.records import PropertyState

JSON = dict[str, Any]
INTERFACE_VERSION: Final = "3"
UNCERTAINTY_MS: Final = 0  # the state lives here: what we report is exact, not sampled


def state_property(
    namespace: str, name: str, value: Any, changed_at: float, *, instance: str | None = None
) -> JSON:
    """One property of a context or change, with its time of sample and uncertainty."""
    prop: JSON = {
        "namespace": namespace,
        "name": name,
        "value": value,
        "timeOfSample": iso(changed_at),
        "uncertaintyInMilliseconds": UNCERTAINTY_MS,
    }
    if instance is not None:
        prop["instance"] = instance
    return prop


class AlexaCapability:
    """An Alexa interface an endpoint implements."""

    interface: ClassVar[str] = "Alexa"
    supported: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *sources: str) -> None:
        self.sources: tuple[str, ...] = sources

    def serialize_discovery(self) -> JSON:
        """The capability object of a Discover.Response or AddOrUpdateReport."""
        result: JSON = {
            "type": "AlexaInterface",
            "interface": self.interface,
            "version": INTERFACE_VERSION,
        }
        if self.supported:
            result["properties"] = {
                "supported": [{"name": name} for name in self.supported],
                "proactivelyReported": True,
                "retrievable": True,
            }
        return result

    def value(self, name: str, values: Mapping[str, PropertyState]) -> Any:
        """The wire value of Alexa property ``name`` from the device values."""
        raise NotImplementedError

    def serialize_properties(self, values: Mapping[str, PropertyState], now: float) -> list[JSON]:
        """The Alexa properties these values give (none when a source is missing)."""
        sources = self.sources
        if not sources:  # reads no device property (EndpointHealth): sampled now
            changed_at = now
        elif len(sources) == 1:  # the usual case, without the generators below
            state = values.get(sources[0])
            if state is None:
                return []
            changed_at = state.changed_at
        else:
            if any(source not in values for source in sources):
                return []
            changed_at = max((values[source].changed_at for source in sources), default=now)
        return [
            state_property(self.interface, name, self.value(name, values), changed_at)
            for name in self.supported
        ]


class AlexaInterface(AlexaCapability):
    """``Alexa``: every endpoint must list it."""


class AlexaPowerController(AlexaCapability):
    """``Alexa.PowerController``: powerState ON/OFF from ``power``."""

    interface = "Alexa.PowerController"
    supported = ("powerState",)

    def __init__(self) -> None:
        super().__init__("power")

    def value(self, name: str, values: Mapping[str, PropertyState]) -> Any:
        """``ON`` or ``OFF``."""
        return values["power"].value


class AlexaBrightnessController(AlexaCapability):
    """``Alexa.BrightnessController``: brightness 0-100 from ``brightness``."""

    interface = "Alexa.BrightnessController"
    supported = ("brightness",)

    def __init__(self) -> None:
        super().__init__("brightness")

    def value(self, name: str, values: Mapping[str, PropertyState]) -> Any:
        """An integer percentage."""
        return int(values["brightness"].value)


class AlexaContactSensor(AlexaCapability):
    """``Alexa.ContactSensor``: detectionState from ``detection``, or mirrored from ``power``.

    DETECTED means open (the parts are apart); a routine-trigger switch reads ON as DETECTED.
    """

    interface = "Alexa.ContactSensor"
    supported = ("detectionState",)

    def __init__(self, source: str = "detection") -> None:
        super().__init__(source)

    def value(self, name: str, values: Mapping[str, PropertyState]) -> Any:
        """``DETECTED`` or ``NOT_DETECTED``."""
        raw = values[self.sources[0]].value
        if self.sources[0] == "power":
            return "DETECTED" if raw == "ON" else "NOT_DETECTED"
        return raw


class AlexaMotionSensor(AlexaContactSensor):
    """``Alexa.MotionSensor``: detectionState from ``detection``."""

    interface = "Alexa.MotionSensor"


class AlexaTemperatureSensor(AlexaCapability):
    """``Alexa.TemperatureSensor``: temperature {value, scale} from ``temperature``."""

    interface = "Alexa.TemperatureSensor"
    supported = ("temperature",)

    def __init__(self) -> None:
        super().__init__("temperature")

    def value(self, name: str, values: Mapping[str, PropertyState]) -> Any:
        """``{"value": 21.5, "scale": "CELSIUS"}``."""
        reading = values["temperature"].value
        return {"value": reading["value"], "scale": reading["scale"]}


class AlexaEndpointHealth(AlexaCapability):
    """``Alexa.EndpointHealth``: a virtual device is always reachable while StateRelay answers."""

    interface = "Alexa.EndpointHealth"
    supported = ("connectivity",)

    def value(self, name: str, values: Mapping[str, PropertyState]) -> Any:
        """``{"value": "OK"}``."""
        return {"value": "OK"}


class AlexaDoorbellEventSource(AlexaCapability):
    """``Alexa.DoorbellEventSource``: a press is a DoorbellPress event; there is no state."""

    interface = "Alexa.DoorbellEventSource"

    def serialize_discovery(self) -> JSON:
        """The capability, proactively reported at its top level as the interface requires."""
        return {**super().serialize_discovery(), "proactivelyReported": True}
