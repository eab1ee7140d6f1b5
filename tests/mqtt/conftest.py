"""The MQTT tests' broker and application."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.app.integration import Integration
from staterelay.app.registry import BUILTIN
from staterelay.integrations.mqtt import Bridge, BridgeTuning, Mqtt
from staterelay.integrations.mqtt.dashboard import BRIDGE_KEY
from staterelay.settings import DispatchSettings, MqttSettings, Settings
from tests.conftest import Account, make_account
from tests.mqtt.broker import Broker
from tests.web.support import browse

__all__ = ["browse"]

Client = TestClient[web.Request, web.Application]
FAST = BridgeTuning(
    backoff_start=0.05,
    backoff_cap=0.5,
    lead_retry=0.2,
    resolve_retry=0.05,
    orphan_window=0.3,
    ha_online_delay=0.05,
)
HOUSEHOLD = "alice@example.com"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of this test's own."""
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    running = Broker(directory)
    running.start()
    try:
        yield running
    finally:
        running.kill()


def with_mqtt(settings: Settings, broker: Broker, household: str = HOUSEHOLD) -> Settings:
    """``settings`` with the bridge on ``broker``, serving Alice's household, fast retries."""
    mqtt = MqttSettings(url=broker.url, household=household)
    return dataclasses.replace(
        settings, mqtt=mqtt, dispatch=DispatchSettings(first_retry_seconds=0.1)
    )


def integrations() -> tuple[Integration, ...]:
    """The built-in registry with a bridge that retries quickly."""
    return (*(i for i in BUILTIN if i.name != "mqtt"), Mqtt(FAST))


def mqtt_app(settings: Settings) -> web.Application:
    """The application with the quick bridge."""
    return create_app(settings, integrations=integrations())


@dataclasses.dataclass
class Setup:
    """A running app with its bridge, Alice's account and the broker."""

    client: Client
    bridge: Bridge
    alice: Account
    broker: Broker

    async def device(self, kind: str, name: str, **extra: Any) -> str:
        """Create a device through the API; its id."""
        response = await self.client.post(
            "/api/v1/devices",
            json={"type": kind, "name": name, **extra},
            headers=self.alice.headers,
        )
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


@pytest.fixture
async def setup(aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker) -> Setup:
    """The app connected to the broker, serving Alice's household."""
    client: Client = await aiohttp_client(mqtt_app(with_mqtt(settings, broker)))
    alice = await make_account(client.app[CORE_KEY], HOUSEHOLD)
    bridge = client.app[BRIDGE_KEY]
    await wait_for(lambda: bridge.status.connected)
    return Setup(client, bridge, alice, broker)


async def wait_for(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait until ``condition()`` holds."""
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.01)
