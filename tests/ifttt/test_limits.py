"""Bounded work per household: thresholds per sensor, and requests per IFTTT connection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.settings import (
    AccountsSettings,
    DatabaseSettings,
    IftttSettings,
    LimitsSettings,
    Settings,
    load_settings,
)
from tests.ifttt.conftest import V1, MovableClock, link, poll


def with_limits(settings: Settings, **ifttt: int) -> Settings:
    """``settings`` with IFTTT limits changed."""
    return dataclasses.replace(
        settings,
        ifttt=dataclasses.replace(settings.ifttt, **ifttt),
    )


async def test_a_sensor_takes_a_bounded_number_of_thresholds(settings: Settings) -> None:
    """Past ``ifttt.max_thresholds_per_sensor`` a new threshold is refused with IFTTT's 400
    and a message that says why; the thresholds already watched keep working."""
    app = create_app(with_limits(settings, max_thresholds_per_sensor=3), clock=MovableClock())
    async with TestClient(TestServer(app)) as client:
        core = app[CORE_KEY]
        alice = await link(core, "alice@example.com")
        sensor = await core.devices.create(
            alice.principal, type="temperature_sensor", name="Attic", source="api"
        )

        def fields(value: int) -> dict[str, object]:
            return {
                "triggerFields": {
                    "device": sensor.id,
                    "direction": "above",
                    "threshold": str(value),
                }
            }

        for value in (20, 25, 30):
            status, _ = await poll(client, alice, "temperature_crossed_threshold", fields(value))
            assert status == 200
        status, body = await poll(client, alice, "temperature_crossed_threshold", fields(35))
        assert status == 400
        [error] = body["errors"]
        assert "already has 3 different thresholds" in error["message"]
        status, _ = await poll(client, alice, "temperature_crossed_threshold", fields(25))
        assert status == 200
        await core.devices.set_state(
            alice.principal, sensor.id, {"temperature": 36.0}, source="api"
        )
        status, body = await poll(client, alice, "temperature_crossed_threshold", fields(25))
        assert status == 200
        assert len(body["data"]) == 1


async def test_each_ifttt_connection_has_its_own_request_limit(settings: Settings) -> None:
    """Over ``limits.ifttt_token_per_minute`` a connection gets 429 with Retry-After in IFTTT's
    error shape; another user's connection, on the same address, is not affected."""
    limited = dataclasses.replace(
        settings, limits=dataclasses.replace(settings.limits, ifttt_token_per_minute=5)
    )
    app = create_app(limited, clock=MovableClock())
    async with TestClient(TestServer(app)) as client:
        core = app[CORE_KEY]
        alice = await link(core, "alice@example.com")
        bob = await link(core, "bob@example.com")
        statuses = []
        for _ in range(6):
            response = await client.get(f"{V1}/user/info", headers=alice.headers)
            statuses.append(response.status)
        assert statuses == [200] * 5 + [429]
        assert int(response.headers["Retry-After"]) >= 1
        body = await response.json()
        assert "5 requests a minute with this IFTTT connection" in body["errors"][0]["message"]
        assert (await client.get(f"{V1}/user/info", headers=bob.headers)).status == 200
        # IFTTT's own service checks carry no user token and are never counted.
        status_headers = {"IFTTT-Service-Key": settings.ifttt.service_key or ""}
        for _ in range(8):
            assert (await client.get(f"{V1}/status", headers=status_headers)).status == 200


@pytest.mark.parametrize(
    ("database", "registration", "configured", "expected"),
    [
        (None, "invite", None, 0),
        (None, "open", None, 300),
        ("postgresql://app@db/staterelay", "invite", None, 300),
        ("postgresql://app@db/staterelay", "invite", 0, 0),
        (None, "invite", 40, 40),
    ],
)
def test_the_ifttt_limit_is_on_by_default_when_hosted(
    tmp_path: Path,
    database: str | None,
    registration: str,
    configured: int | None,
    expected: int,
) -> None:
    """A home instance counts nothing unless asked; a hosted one (PostgreSQL or open
    sign-up) limits each IFTTT connection to 300 requests a minute unless configured."""
    base = load_settings(data_dir=tmp_path, environ={})
    settings = dataclasses.replace(
        base,
        database=DatabaseSettings(url=database),
        accounts=AccountsSettings(registration=registration),  # type: ignore[arg-type]
        limits=LimitsSettings(ifttt_token_per_minute=configured),
        ifttt=IftttSettings(),
    )
    assert settings.ifttt_token_per_minute == expected
