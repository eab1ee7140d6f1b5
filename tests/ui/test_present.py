"""How devices and activity read: state text, delivery results, the curl line."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from staterelay.core.records import ActivityEntry, Device, PropertyState
from staterelay.settings import HostsSettings, ServerSettings, Settings
from staterelay.ui.present import activity_view, curl_snippet, delivery_text, state_text


def device(kind: str, options: dict[str, Any] | None = None, **state: Any) -> Device:
    """A device record with these property values."""
    return Device(
        seq=1,
        id="dev_x",
        tenant_id="ten_x",
        type=kind,
        name="Thing",
        description="",
        options=options or {},
        properties={k: PropertyState(v, 1.0) for k, v in state.items()},
        version=3,
        created_at=1.0,
        updated_at=1.0,
    )


def entry(kind: str, **fields: Any) -> ActivityEntry:
    """An activity row."""
    base: dict[str, Any] = {
        "id": 7,
        "tenant_id": "ten_x",
        "device_id": "dev_x",
        "device_name": "Thing",
        "kind": kind,
        "source": "system",
        "actor": None,
        "cause": None,
        "property": None,
        "old_value": None,
        "new_value": None,
        "detail": {},
        "created_at": 1_800_000_000.0,
    }
    return ActivityEntry(**{**base, **fields})


@pytest.mark.parametrize(
    ("thing", "text"),
    [
        (device("switch", power="ON"), "On"),
        (device("dimmer", power="OFF", brightness=40), "Off · 40 %"),
        (device("contact_sensor", detection="DETECTED"), "Open"),
        (device("motion_sensor", detection="NOT_DETECTED"), "No motion"),
        (device("temperature_sensor", temperature={"value": 21.5, "scale": "CELSIUS"}), "21.5 °C"),
        (device("temperature_sensor", temperature={"value": 70.0, "scale": "FAHRENHEIT"}), "70 °F"),
        (device("button", last_pressed_at=None), "Never pressed"),
    ],
)
def test_state_reads_in_a_few_words(thing: Device, text: str) -> None:
    """The pill on every card."""
    assert state_text(thing) == text


@pytest.mark.parametrize(
    ("detail", "text", "tone"),
    [
        (
            {
                "sink": "alexa",
                "event_type": "state.changed",
                "status_code": 202,
                "outcome": "delivered",
                "attempt": 1,
            },
            "Alexa ChangeReport accepted (202)",
            "ok",
        ),
        (
            {
                "sink": "alexa",
                "event_type": "device.deleted",
                "status_code": 202,
                "outcome": "delivered",
            },
            "Alexa DeleteReport accepted (202)",
            "ok",
        ),
        (
            {
                "sink": "alexa",
                "event_type": "state.changed",
                "status_code": 403,
                "error": "SKILL_DISABLED_EXCEPTION",
                "outcome": "dead",
                "attempt": 1,
            },
            "Alexa ChangeReport failed (403): SKILL_DISABLED_EXCEPTION",
            "error",
        ),
        (
            {
                "sink": "ifttt",
                "event_type": "ifttt.realtime",
                "status_code": 200,
                "outcome": "delivered",
            },
            "IFTTT notified (200)",
            "ok",
        ),
        (
            {
                "sink": "google",
                "event_type": "state.changed",
                "status_code": 200,
                "outcome": "delivered",
            },
            "Google Home Report State accepted (200)",
            "ok",
        ),
        (
            {
                "sink": "google",
                "event_type": "device.created",
                "status_code": 404,
                "error": "Home Graph 404 NOT_FOUND",
                "outcome": "dead",
            },
            "Google Home Request Sync failed (404): Home Graph 404 NOT_FOUND",
            "error",
        ),
        (
            {"sink": "webhook", "destination": "whk_1", "status_code": 200, "outcome": "delivered"},
            "Webhook “Home Assistant” answered 200",
            "ok",
        ),
        (
            {
                "sink": "webhook",
                "destination": "whk_2",
                "status_code": 500,
                "error": "answered 500",
                "outcome": "retry",
                "attempt": 2,
            },
            "Webhook failed (500): answered 500 (will retry, attempt 2)",
            "retry",
        ),
        (
            {
                "sink": "webhook",
                "destination": "whk_1",
                "status_code": None,
                "error": "connection refused",
                "outcome": "dead",
            },
            "Webhook “Home Assistant” failed: connection refused",
            "error",
        ),
    ],
)
def test_delivery_results_say_who_answered_what(
    detail: dict[str, Any], text: str, tone: str
) -> None:
    """What users could only learn from a maintainer's server log elsewhere."""
    assert delivery_text(detail, {"whk_1": "Home Assistant"}) == (text, tone)


def test_sensor_changes_read_by_kind_of_sensor() -> None:
    """A contact sensor opens and closes; a motion sensor detects and stops."""
    change = entry("state", property="detection", old_value="NOT_DETECTED", new_value="DETECTED")
    assert activity_view(change, {"dev_x": "contact_sensor"})["text"] == "Opened"
    assert activity_view(change, {"dev_x": "motion_sensor"})["text"] == "Motion detected"
    renamed = entry("device.updated", old_value="Lamp", new_value="Desk lamp")
    assert activity_view(renamed)["text"] == "Renamed from “Lamp” to “Desk lamp”"
    view = activity_view(entry("press", source="ifttt", cause="IFTTT applet 4"))
    assert (view["source_label"], view["cause"], view["at"]) == (
        "IFTTT",
        "IFTTT applet 4",
        "2027-01-15T08:00:00.000Z",
    )


def test_the_curl_line_uses_the_api_host(settings: Settings) -> None:
    """With hosts split, scripts talk to the ``api`` host on the public URL's scheme and port."""
    split = dataclasses.replace(
        settings,
        server=ServerSettings(
            public_url="https://home.example.com:8443", hosts=HostsSettings(api="api.example.com")
        ),
    )
    assert split.role_url("api") == "https://api.example.com:8443"
    assert curl_snippet(split, device("button", last_pressed_at=None)) == (
        "curl -X POST https://api.example.com:8443/api/v1/devices/dev_x/press \\\n"
        '  -H "Authorization: Bearer $STATERELAY_KEY"'
    )
    dimmer = curl_snippet(settings, device("dimmer", power="ON", brightness=3))
    assert dimmer.splitlines()[-1] == '  -d \'{"power": "ON", "brightness": 60}\''
