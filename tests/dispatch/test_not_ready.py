"""A sink that cannot send in this process (``ready()`` is False) leaves its rows to another
process: they are not attempted here, and count no attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.app.registry import BUILTIN
from staterelay.core.records import OutboxItem
from staterelay.core.sinks import SinkResult
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.settings import Settings
from tests.app.example import Example
from tests.conftest import make_account


class GatedSink:
    """The example sink's name; sends only while ``open``."""

    name = "example"

    def __init__(self) -> None:
        self.open = False
        self.sent: list[OutboxItem] = []

    def ready(self) -> bool:
        """Whether this process may send."""
        return self.open

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """Accept."""
        self.sent.append(item)
        return SinkResult(delivered=True, status_code=200)

    async def close(self) -> None:
        """Nothing to release."""


async def test_rows_of_a_sink_not_ready_are_parked_without_an_attempt(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """While the sink is not ready its row is not sent; once it is, the row goes out on its
    first attempt."""
    client = await aiohttp_client(create_app(settings, integrations=(*BUILTIN, Example())))
    await client.app[DISPATCHER_KEY].stop()
    core = client.app[CORE_KEY]
    account = await make_account(core, "alice@example.com")
    created = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Fan"}, headers=account.headers
    )
    device_id = (await created.json())["id"]
    await client.put(
        f"/api/v1/devices/{device_id}/state", json={"power": "ON"}, headers=account.headers
    )
    sink = GatedSink()
    dispatcher = Dispatcher(
        core,
        {"example": sink},
        config=DispatcherConfig(owner="gated", poll_seconds=0.05, release_all_on_start=True),
    )
    await dispatcher.start()
    try:
        await asyncio.sleep(0.5)
        assert sink.sent == []
        assert (await core.outbox.stats()).pending == 1
        sink.open = True
        for _ in range(300):
            if sink.sent:
                break
            await asyncio.sleep(0.02)
        assert len(sink.sent) == 1
        assert sink.sent[0].attempts == 0
    finally:
        await dispatcher.stop()
