"""StateRelay devices as Google Home sees them: SYNC entries, trait states and commands.

One serializer makes QUERY answers, EXECUTE states and Report State payloads, so what Google
reads and what it is told never differ (Report State drops ``online``). The mapping, and
why, is in docs/google.md:

=================== ============ ===================== ==========================================
StateRelay           type         traits                states
=================== ============ ===================== ==========================================
switch               SWITCH       OnOff                 ``on``
dimmer               LIGHT        OnOff, Brightness     ``on``, ``brightness``
contact_sensor       SENSOR       OpenClose (query-     ``openPercent`` 100 open / 0 closed
                                  only, discrete)
motion_sensor        SENSOR       OccupancySensing      ``occupancy`` OCCUPIED / UNOCCUPIED
temperature_sensor   SENSOR       TemperatureControl    ``temperatureAmbientCelsius`` (and the
                                  (query-only)          setpoint equal to it)
button               DOORBELL     ObjectDetection       none; each press is a notification
=================== ============ ===================== ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from staterelay.core.device_types import TEMPERATURE_RANGE
from staterelay.core.records import Device

JSON = dict[str, Any]

TYPE_PREFIX: Final = "action.devices.types."
TRAIT_PREFIX: Final = "action.devices.traits."
COMMAND_PREFIX: Final = "action.devices.commands."

GOOGLE_TYPES: Final = {
    "switch": "SWITCH",
    "dimmer": "LIGHT",
    "contact_sensor": "SENSOR",
    "motion_sensor": "SENSOR",
    "temperature_sensor": "SENSOR",
    "button": "DOORBELL",
}
TRAITS: Final[Mapping[str, tuple[str, ...]]] = {
    "switch": ("OnOff",),
    "dimmer": ("OnOff", "Brightness"),
    "contact_sensor": ("OpenClose",),
    "motion_sensor": ("OccupancySensing",),
    "temperature_sensor": ("TemperatureControl",),
    "button": ("ObjectDetection",),
}
LOW_CELSIUS, HIGH_CELSIUS = TEMPERATURE_RANGE["CELSIUS"]
# A brightnessRelativeWeight step (-5..5) moves the level by this many percent.
WEIGHT_STEP: Final = 10


class CommandError(Exception):
    """A command Google sent cannot be carried out: ``code`` is Google's error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def celsius(reading: Any) -> float | None:
    """A temperature property as degrees Celsius (Google's wire is always Celsius)."""
    if not isinstance(reading, Mapping) or not isinstance(reading.get("value"), int | float):
        return None
    value = float(reading["value"])
    if reading.get("scale") == "FAHRENHEIT":
        value = (value - 32.0) * 5.0 / 9.0
    return round(value, 1)


def sync_entry(device: Device) -> JSON:
    """The device as a SYNC answer lists it."""
    entry: JSON = {
        "id": device.id,
        "type": TYPE_PREFIX + GOOGLE_TYPES[device.type],
        "traits": [TRAIT_PREFIX + trait for trait in TRAITS[device.type]],
        "name": {
            "defaultNames": [f"StateRelay {device.type.replace('_', ' ')}"],
            "name": device.name,
        },
        "willReportState": True,
        "deviceInfo": {"manufacturer": "StateRelay", "model": device.type},
    }
    attributes = _attributes(device)
    if attributes:
        entry["attributes"] = attributes
    if device.type == "button":
        entry["notificationSupportedByAgent"] = True
    if device.room:
        entry["roomHint"] = device.room
    return entry


def _attributes(device: Device) -> JSON:
    kind = device.type
    if kind == "contact_sensor":
        return {"discreteOnlyOpenClose": True, "queryOnlyOpenClose": True}
    if kind == "motion_sensor":
        return {"occupancySensorConfiguration": [{"occupancySensorType": "PIR"}]}
    if kind == "temperature_sensor":
        return {
            "queryOnlyTemperatureControl": True,
            "temperatureUnitForUX": "F" if device.options.get("scale") == "FAHRENHEIT" else "C",
            "temperatureRange": {
                "minThresholdCelsius": LOW_CELSIUS,
                "maxThresholdCelsius": HIGH_CELSIUS,
            },
        }
    return {}


def states(device: Device, overrides: Mapping[str, Any] | None = None) -> JSON:
    """The full state of every trait the device declares (``overrides``: property values to
    use instead of the device's own, for a transition reported with the value it had)."""
    values = {name: prop.value for name, prop in device.properties.items()}
    if overrides:
        values.update(overrides)
    kind = device.type
    if kind == "switch":
        return {"on": values.get("power") == "ON"}
    if kind == "dimmer":
        level = values.get("brightness")
        return {
            "on": values.get("power") == "ON",
            "brightness": level if isinstance(level, int) and 0 <= level <= 100 else 0,
        }
    if kind == "contact_sensor":
        return {"openPercent": 100 if values.get("detection") == "DETECTED" else 0}
    if kind == "motion_sensor":
        return {"occupancy": "OCCUPIED" if values.get("detection") == "DETECTED" else "UNOCCUPIED"}
    if kind == "temperature_sensor":
        reading = celsius(values.get("temperature"))
        if reading is None:
            return {}
        reading = min(max(reading, LOW_CELSIUS), HIGH_CELSIUS)
        return {"temperatureAmbientCelsius": reading, "temperatureSetpointCelsius": reading}
    return {}


def query_entry(device: Device) -> JSON:
    """The device as a QUERY answer gives it: online, SUCCESS and its states."""
    return {"online": True, "status": "SUCCESS", **states(device)}


Change = Mapping[str, Any] | Callable[[Device], Mapping[str, Any]]


def command_change(device_type: str, command: str, params: Any) -> Change:
    """The state change one EXECUTE command asks of a device of ``device_type``.

    Raises ``CommandError`` with Google's code: ``functionNotSupported`` for a command the
    device has no trait for (sensors are query-only), ``notSupported`` for an unknown
    command, ``valueOutOfRange`` or ``protocolError`` for bad parameters.
    """
    name = command.removeprefix(COMMAND_PREFIX) if command.startswith(COMMAND_PREFIX) else None
    if name not in ("OnOff", "BrightnessAbsolute", "BrightnessRelative"):
        if name is None or name not in KNOWN_COMMANDS:
            raise CommandError("notSupported", f"{command} is not a command StateRelay knows")
        raise CommandError("functionNotSupported", f"a {device_type} cannot {name}")
    if not isinstance(params, Mapping):
        raise CommandError("protocolError", "params must be an object")
    if name == "OnOff":
        if device_type not in ("switch", "dimmer"):
            raise CommandError("functionNotSupported", f"a {device_type} cannot be switched")
        on = params.get("on")
        if not isinstance(on, bool):
            raise CommandError("protocolError", "OnOff needs a boolean 'on'")
        return {"power": "ON" if on else "OFF"}
    if device_type != "dimmer":
        raise CommandError("functionNotSupported", f"a {device_type} has no brightness")
    if name == "BrightnessAbsolute":
        level = params.get("brightness")
        if isinstance(level, bool) or not isinstance(level, int | float):
            raise CommandError("protocolError", "BrightnessAbsolute needs a number 'brightness'")
        if not 0 <= level <= 100 or (isinstance(level, float) and not level.is_integer()):
            raise CommandError("valueOutOfRange", "brightness must be a whole number 0-100")
        return {"brightness": int(level)}
    percent = params.get("brightnessRelativePercent")
    weight = params.get("brightnessRelativeWeight")
    if isinstance(percent, int | float) and _whole(percent) and weight is None:
        step = int(percent)
    elif isinstance(weight, int | float) and _whole(weight) and percent is None:
        step = int(weight) * WEIGHT_STEP
    else:
        raise CommandError(
            "protocolError",
            "BrightnessRelative needs brightnessRelativePercent or brightnessRelativeWeight",
        )
    if abs(step) > 100:
        raise CommandError("valueOutOfRange", "a relative step is at most 100 percent")

    def relative(current: Device) -> Mapping[str, Any]:
        power = current.properties.get("power")
        if power is None or power.value != "ON":
            # An off light brightens from 0 (and so turns on); dimming it keeps it off.
            return {"brightness": max(0, step)}
        prop = current.properties.get("brightness")
        level = prop.value if prop is not None and isinstance(prop.value, int) else 0
        return {"brightness": min(100, max(0, level + step))}

    return relative


def _whole(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and float(value).is_integer()
    )


# Commands of Google's traits StateRelay's devices do not have: functionNotSupported for
# these, notSupported for anything else.
KNOWN_COMMANDS: Final = frozenset(
    {
        "OpenClose",
        "OpenCloseRelative",
        "SetTemperature",
        "ThermostatTemperatureSetpoint",
        "ThermostatSetMode",
        "ColorAbsolute",
        "LockUnlock",
        "StartStop",
        "PauseUnpause",
        "SetToggles",
        "SetModes",
        "ActivateScene",
        "GetCameraStream",
        "ArmDisarm",
        "Reboot",
        "Locate",
        "SetVolume",
        "mute",
    }
)
