"""The Google Home story on PostgreSQL: links read with the other interest facts in the one
round trip, reports planned and delivered, DISCONNECT ending it (row-level security on)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.core import Core
from staterelay.settings import DatabaseSettings, Settings, WebhookSettings, load_settings
from tests.google.conftest import (
    REPORT,
    SYNC,
    FakeGoogle,
    intent,
    request,
    settle,
    synced,
)
from tests.oauth.conftest import Client
from tests.postgres_support import ScratchDatabase, migrated_database


@pytest.fixture
async def database() -> AsyncIterator[ScratchDatabase]:
    """A fresh database, migrated by its owner."""
    async with migrated_database() as fresh:
        yield fresh


@pytest.fixture
def settings(tmp_path: Path, database: ScratchDatabase) -> Settings:
    """Settings on PostgreSQL as the app role."""
    base = load_settings(data_dir=tmp_path / "data", environ={})
    return dataclasses.replace(
        base,
        database=DatabaseSettings(url=database.app_url),
        webhooks=WebhookSettings(allow_private_networks=True, timeout_seconds=2.0),
    )


async def test_link_report_and_disconnect_on_postgres(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """A change made before the link is not sent; after SYNC one is; after DISCONNECT none."""
    assert type(core.store).__name__ == "PostgresStore"
    principal = await core.auth.authenticate(token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert google.calls == []
    await synced(browser, token)
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    [call] = await google.wait(REPORT, 1)
    assert call.json()["payload"]["devices"]["states"] == {lamp.id: {"on": False}}
    await core.devices.update(principal, lamp.id, fields={"name": "Hall lamp"}, source="api")
    await google.wait(SYNC, 1)
    _, answer = await intent(browser, token, request("DISCONNECT"))
    assert answer == {}
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert len(google.of(REPORT)) == 1
