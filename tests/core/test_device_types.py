"""Value validation for every device type, including property-based tests."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, strategies as st

from staterelay.core.device_types import (
    DEVICE_TYPES,
    apply_type_rules,
    default_properties,
    device_type,
    normalize_brightness,
    normalize_detection,
    normalize_power,
    normalize_properties,
    normalize_temperature,
    validate_description,
    validate_name,
    validate_options,
)
from staterelay.core.errors import InvalidInput, UnknownField, ValueOutOfRange

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values)
def test_power_accepts_only_on_off_or_booleans(value: Any) -> None:
    """Any JSON value is either normalized to ON/OFF or refused with InvalidInput."""
    try:
        result = normalize_power(value, {})
    except InvalidInput:
        assert not isinstance(value, bool)
        assert not (isinstance(value, str) and value.upper() in ("ON", "OFF"))
    else:
        assert result in ("ON", "OFF")


@given(json_values)
def test_brightness_is_an_int_from_0_to_100(value: Any) -> None:
    """Brightness results are always ints in range; anything else is refused."""
    try:
        result = normalize_brightness(value, {})
    except InvalidInput:
        return
    assert isinstance(result, int)
    assert 0 <= result <= 100
    assert not isinstance(value, bool)


@given(st.integers())
def test_brightness_range_error_is_specific(value: int) -> None:
    """Out-of-range integers raise ValueOutOfRange, in-range ones pass through."""
    if 0 <= value <= 100:
        assert normalize_brightness(value, {}) == value
    else:
        with pytest.raises(ValueOutOfRange):
            normalize_brightness(value, {})


@given(json_values)
def test_detection_values(value: Any) -> None:
    """Detection is DETECTED or NOT_DETECTED after normalization."""
    with contextlib.suppress(InvalidInput):
        assert normalize_detection(value, {}) in ("DETECTED", "NOT_DETECTED")


@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["CELSIUS", "FAHRENHEIT"]))
def test_temperature_plausible_range(value: float, scale: str) -> None:
    """Readings outside the plausible range or not finite are refused."""
    limits = {"CELSIUS": (-90.0, 150.0), "FAHRENHEIT": (-130.0, 302.0)}[scale]
    try:
        result = normalize_temperature({"value": value, "scale": scale}, {})
    except InvalidInput:
        assert not math.isfinite(value) or not limits[0] <= value <= limits[1]
    else:
        assert result["scale"] == scale
        assert limits[0] <= result["value"] <= limits[1]


def test_temperature_uses_device_scale_for_plain_numbers() -> None:
    """A bare number is read in the device's configured scale."""
    assert normalize_temperature(70, {"scale": "FAHRENHEIT"}) == {
        "value": 70.0,
        "scale": "FAHRENHEIT",
    }
    with pytest.raises(ValueOutOfRange):
        normalize_temperature(200, {"scale": "CELSIUS"})
    with pytest.raises(UnknownField):
        normalize_temperature({"value": 1, "unit": "C"}, {})


@given(st.text(max_size=200))
def test_names(value: str) -> None:
    """Valid names are 1-128 characters after trimming, without control characters."""
    try:
        name = validate_name(value)
    except InvalidInput:
        stripped = value.strip()
        assert not 1 <= len(stripped) <= 128 or any(ord(c) < 32 or ord(c) == 127 for c in stripped)
    else:
        assert name == value.strip()
        assert 1 <= len(name) <= 128


def test_description_limit() -> None:
    """Descriptions may be empty and at most 128 characters."""
    assert validate_description(None) == ""
    assert validate_description("x" * 128) == "x" * 128
    with pytest.raises(InvalidInput):
        validate_description("x" * 129)
    with pytest.raises(InvalidInput):
        validate_description(5)


def test_options_per_type() -> None:
    """Only a switch takes routine_trigger, only a temperature sensor takes scale."""
    assert validate_options(DEVICE_TYPES["switch"], {"routine_trigger": True}) == {
        "routine_trigger": True
    }
    with pytest.raises(UnknownField):
        validate_options(DEVICE_TYPES["dimmer"], {"routine_trigger": True})
    with pytest.raises(InvalidInput):
        validate_options(DEVICE_TYPES["temperature_sensor"], {"scale": "KELVIN"})


def test_unknown_type_and_property() -> None:
    """Unknown device types and properties are refused with the field named."""
    with pytest.raises(InvalidInput) as info:
        device_type("toaster")
    assert info.value.field == "type"
    with pytest.raises(UnknownField) as unknown:
        normalize_properties(DEVICE_TYPES["switch"], {"brightness": 5}, {})
    assert unknown.value.field == "brightness"
    with pytest.raises(InvalidInput):
        normalize_properties(DEVICE_TYPES["button"], {"last_pressed_at": "x"}, {})


@pytest.mark.parametrize("name", sorted(DEVICE_TYPES))
def test_defaults_are_valid_values(name: str) -> None:
    """Every type's default properties pass its own validation (buttons have none to set)."""
    kind = DEVICE_TYPES[name]
    defaults = default_properties(kind, {})
    assert set(defaults) == set(kind.property_names)
    if not kind.momentary:
        assert normalize_properties(kind, defaults, {}) == defaults


DIMMER = DEVICE_TYPES["dimmer"]


@pytest.mark.parametrize(
    ("current", "asked", "result"),
    [
        # Brightness 0 is off, keeping the level; any source asks it this way.
        ({"power": "ON", "brightness": 43}, {"brightness": 0}, {"power": "OFF"}),
        ({"power": "ON", "brightness": 43}, {"power": "ON", "brightness": 0}, {"power": "OFF"}),
        ({"power": "OFF", "brightness": 43}, {"brightness": 0}, {"power": "OFF"}),
        # A level above 0 switches on, unless power is given too.
        ({"power": "OFF", "brightness": 43}, {"brightness": 60}, {"brightness": 60, "power": "ON"}),
        (
            {"power": "ON", "brightness": 43},
            {"brightness": 60, "power": "OFF"},
            {"brightness": 60, "power": "OFF"},
        ),
        # On restores the kept level; a dimmer left at 0 by older versions comes on full.
        ({"power": "OFF", "brightness": 43}, {"power": "ON"}, {"power": "ON"}),
        ({"power": "OFF", "brightness": 0}, {"power": "ON"}, {"power": "ON", "brightness": 100}),
        ({"power": "ON", "brightness": 43}, {"power": "OFF"}, {"power": "OFF"}),
    ],
)
def test_a_dimmer_is_never_on_at_zero(
    current: dict[str, Any], asked: dict[str, Any], result: dict[str, Any]
) -> None:
    assert apply_type_rules(DIMMER, current, asked) == result


@given(
    st.sampled_from(["ON", "OFF"]),
    st.integers(0, 100),
    st.one_of(st.none(), st.sampled_from(["ON", "OFF"])),
    st.one_of(st.none(), st.integers(0, 100)),
)
def test_no_update_leaves_a_dimmer_on_at_zero(
    power: str, level: int, asked_power: str | None, asked_level: int | None
) -> None:
    asked = {
        k: v for k, v in (("power", asked_power), ("brightness", asked_level)) if v is not None
    }
    after = {
        "power": power,
        "brightness": level,
        **apply_type_rules(DIMMER, {"power": power, "brightness": level}, asked),
    }
    assert not (after["power"] == "ON" and after["brightness"] == 0) or (
        power == "ON" and level == 0 and not asked
    )


def test_other_types_are_left_alone() -> None:
    switch = DEVICE_TYPES["switch"]
    assert apply_type_rules(switch, {"power": "OFF"}, {"power": "ON"}) == {"power": "ON"}
