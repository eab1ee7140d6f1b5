"""Devices as Alexa endpoints: display categories, capabilities and discovery objects.

The device id is the endpointId, stable forever. A switch with ``routine_trigger`` stays ONE
endpoint that implements both PowerController and ContactSensor (see docs/alexa.md): voice
control and the Routine trigger share a name, a device count and a ChangeReport.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from staterelay.core.records import Device, PropertyState
from staterelay.integrations.alexa.capabilities import (
    AlexaBrightnessController,
    AlexaCapability,
    AlexaContactSensor,
    AlexaDoorbellEventSource,
    AlexaEndpointHealth,
    AlexaInterface,
    AlexaMotionSensor,
    AlexaPowerController,
    AlexaTemperatureSensor,
)

JSON = dict[str, Any]
MANUFACTURER: Final = "StateRelay"
MAX_ENDPOINTS: Final = 300  # per Discover.Response and per account
DESCRIPTION_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class EndpointKind:
    """How one device type appears in Alexa."""

    label: str
    categories: tuple[str, ...]
    capabilities: Callable[[], list[AlexaCapability]]
    transitions: frozenset[str] = frozenset()
    """Device properties whose every transition matters (they start Routines)."""


_KINDS: Final[dict[str, EndpointKind]] = {
    "switch": EndpointKind("Virtual switch", ("SWITCH",), lambda: [AlexaPowerController()]),
    "dimmer": EndpointKind(
        "Virtual dimmer",
        ("LIGHT",),
        lambda: [AlexaPowerController(), AlexaBrightnessController()],
    ),
    "contact_sensor": EndpointKind(
        "Virtual contact sensor",
        ("CONTACT_SENSOR",),
        lambda: [AlexaContactSensor()],
        frozenset({"detection"}),
    ),
    "motion_sensor": EndpointKind(
        "Virtual motion sensor",
        ("MOTION_SENSOR",),
        lambda: [AlexaMotionSensor()],
        frozenset({"detection"}),
    ),
    "temperature_sensor": EndpointKind(
        "Virtual temperature sensor", ("TEMPERATURE_SENSOR",), lambda: [AlexaTemperatureSensor()]
    ),
    "button": EndpointKind("Virtual button", ("DOORBELL",), lambda: [AlexaDoorbellEventSource()]),
}


@dataclass(frozen=True, slots=True)
class _Shape:
    """What an endpoint is made of, the same for every device of a type and options."""

    label: str
    categories: tuple[str, ...]
    transitions: frozenset[str]
    capabilities: tuple[AlexaCapability, ...]
    reporting: tuple[AlexaCapability, ...]
    """The capabilities that have properties to report, in the same order."""


@functools.cache
def _shape(device_type: str, routine_trigger: bool) -> _Shape:
    """Built once per type: capabilities hold no state of a device, so endpoints share them."""
    kind = _KINDS[device_type]
    categories = kind.categories
    transitions = kind.transitions
    capabilities = [AlexaInterface(), *kind.capabilities()]
    if routine_trigger:
        capabilities.append(AlexaContactSensor("power"))
        categories = (*categories, "CONTACT_SENSOR")
        transitions = frozenset({"power"})
    capabilities.append(AlexaEndpointHealth())
    reporting = tuple(cap for cap in capabilities if cap.supported)
    return _Shape(kind.label, categories, transitions, tuple(capabilities), reporting)


class AlexaEndpoint:
    """One device as Alexa sees it."""

    def __init__(self, device: Device) -> None:
        self.device = device
        shape = _shape(
            device.type, device.type == "switch" and bool(device.options.get("routine_trigger"))
        )
        self.label = shape.label
        self.categories = shape.categories
        self.transitions = shape.transitions
        self.capabilities: tuple[AlexaCapability, ...] = shape.capabilities
        self._reporting = shape.reporting

    @property
    def endpoint_id(self) -> str:
        """The device id."""
        return self.device.id

    def supports(self, interface: str) -> bool:
        """True when the endpoint implements ``interface``."""
        return any(cap.interface == interface for cap in self.capabilities)

    def discovery(self) -> JSON:
        """The endpoint object of a Discover.Response or AddOrUpdateReport."""
        device = self.device
        return {
            "endpointId": device.id,
            "manufacturerName": MANUFACTURER,
            "friendlyName": device.name,
            "description": self.description(),
            "displayCategories": list(self.categories),
            "additionalAttributes": {"manufacturer": MANUFACTURER, "model": self.label},
            "cookie": {},
            "capabilities": [cap.serialize_discovery() for cap in self.capabilities],
        }

    def description(self) -> str:
        """What the Alexa app shows under the name: the room first, at most 128 characters."""
        device = self.device
        text = device.description or f"{self.label} by {MANUFACTURER}"
        if device.room:
            text = f"{device.room} · {text}"
        return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"

    def properties(
        self,
        now: float,
        values: Mapping[str, PropertyState] | None = None,
        *,
        only: Iterable[str] | None = None,
        without: Iterable[str] = (),
        reachable: bool = True,
    ) -> list[JSON]:
        """Alexa properties of the current state (or ``values``).

        ``only`` keeps the properties read from those device properties (the change of a
        ChangeReport); ``without`` drops them (its context). EndpointHealth reads no device
        property: it is in every context and never in a change; it says ``UNREACHABLE``
        when not ``reachable`` (a device the household's plan suspended).
        """
        state = self.device.properties if values is None else values
        result: list[JSON] = []
        if only is None and not without:  # every property: a response or a StateReport
            for cap in self._reporting:
                result += cap.serialize_properties(state, now)
        else:
            keep = None if only is None else frozenset(only)
            drop = frozenset(without)
            for cap in self._reporting:
                if cap.sources:
                    if keep is not None and not keep.issuperset(cap.sources):
                        continue
                    if drop and not drop.isdisjoint(cap.sources):
                        continue
                elif keep is not None:
                    continue
                result += cap.serialize_properties(state, now)
        if not reachable:  # suspended by the household's plan: unreachable, never gone
            for prop in result:
                if prop["namespace"] == AlexaEndpointHealth.interface:
                    prop["value"] = {"value": "UNREACHABLE"}
        return result


def endpoints(devices: Iterable[Device]) -> list[JSON]:
    """Discovery objects of at most 300 devices."""
    found: list[JSON] = []
    for device in devices:
        if device.type in _KINDS:
            found.append(AlexaEndpoint(device).discovery())
        if len(found) >= MAX_ENDPOINTS:
            break
    return found
