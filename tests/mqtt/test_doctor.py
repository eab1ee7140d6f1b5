"""``staterelay doctor`` on the bridge: the broker answers or not; the household can be told."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from staterelay.app.appkeys import CORE_KEY
from staterelay.ops.checks import Check
from staterelay.ops.doctor import run_checks
from staterelay.settings import MqttSettings, Settings
from tests.conftest import make_account
from tests.mqtt.broker import Broker, free_port
from tests.mqtt.conftest import integrations, mqtt_app, with_mqtt


def mqtt_checks(settings: Settings) -> dict[str, Check]:
    """The doctor's MQTT lines by name."""
    checks = run_checks(settings, None, integrations=integrations())
    return {check.name: check for check in checks if check.name.startswith("mqtt")}


async def test_doctor_checks_the_broker_and_the_household(
    aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker
) -> None:
    """OK with the broker up and one household; FAIL with the broker's port closed, with
    two households and none named, and with an email nobody has."""
    on = with_mqtt(settings, broker)
    client = await aiohttp_client(mqtt_app(on))
    await make_account(client.app[CORE_KEY], "alice@example.com")
    found = mqtt_checks(on)
    assert found["mqtt broker"].status == "OK"
    assert found["mqtt household"].status == "OK"
    await make_account(client.app[CORE_KEY], "bob@example.net", new_tenant=True)
    await client.close()
    unnamed = dataclasses.replace(on, mqtt=MqttSettings(url=broker.url))
    assert mqtt_checks(unnamed)["mqtt household"].status == "FAIL"
    assert "2 households" in mqtt_checks(unnamed)["mqtt household"].message
    nobody = dataclasses.replace(on, mqtt=MqttSettings(url=broker.url, household="x@example.org"))
    assert mqtt_checks(nobody)["mqtt household"].status == "FAIL"
    closed = dataclasses.replace(on, mqtt=MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}"))
    assert mqtt_checks(closed)["mqtt broker"].status == "FAIL"
    assert "mqtt.url" in (mqtt_checks(closed)["mqtt broker"].fix or "")


def test_doctor_says_nothing_of_mqtt_when_it_is_off(settings: Settings) -> None:
    """No URL: no MQTT lines at all (the settings section is reported as unused)."""
    assert not [name for name in mqtt_checks(settings) if name != "mqtt"]
