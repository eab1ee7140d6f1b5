"""Leases across deliverers: rows held behind a slow destination are renewed, never sent twice.

A dispatcher claims a batch but sends at most ``concurrency_per_destination`` rows of one
destination at a time; the rest wait in the lane, possibly longer than the lease. These
tests run two dispatchers (two owners, as two replicas) on one store, on SQLite and on
PostgreSQL, with a lease far shorter than the lane's backlog.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from staterelay.app.factory import DISPATCHER_KEY
from staterelay.core import Core
from staterelay.core.records import Device, OutboxItem, Principal
from staterelay.core.sinks import SinkResult
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.settings import DatabaseSettings, Settings, WebhookSettings, load_settings
from staterelay.store import open_store
from tests.dispatch.conftest import HookFactory, Receiver, wait_until
from tests.postgres_support import fresh_database

LEASE = 0.5
ROWS = 12


@pytest.fixture(params=["sqlite", "postgres"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """The app's settings on each backend (PostgreSQL: a fresh database, as the app role)."""
    base = load_settings(data_dir=tmp_path / "data", environ={})
    base = dataclasses.replace(
        base, webhooks=WebhookSettings(allow_private_networks=True, timeout_seconds=2.0)
    )
    if request.param == "sqlite":
        yield base
        return
    async with fresh_database() as database:
        store = open_store(database.app_url, migrate_url=database.owner_url)
        await store.open()
        await store.close()
        yield dataclasses.replace(base, database=DatabaseSettings(url=database.app_url))


@dataclass
class SlowSink:
    """Takes ``first_seconds`` for its first row (a destination that hangs for a while), then
    ``seconds`` per row, and notes which dispatcher sent which row."""

    sender: str
    sent: list[tuple[int, str]]
    first_seconds: float = 1.2
    seconds: float = 0.1
    name: str = "webhook"

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """Send ``item`` slowly; it always arrives."""
        first = not any(sender == self.sender for _, sender in self.sent)
        self.sent.append((item.id, self.sender))
        await asyncio.sleep(self.first_seconds if first else self.seconds)
        return SinkResult(delivered=True, status_code=204)

    async def close(self) -> None:
        """Nothing to release."""


async def _queue(core: Core, principal: Principal, lamp: Device, count: int) -> None:
    """A state change of the lamp and of ``count - 1`` more switches: one outbox row each
    for the one webhook (state changes only), each the head of its own ordering key, so
    one dispatcher may hold them all at once."""
    devices = [lamp]
    for i in range(count - 1):
        devices.append(
            await core.devices.create(principal, type="switch", name=f"Switch {i}", source="api")
        )
    for device in devices:
        await core.devices.set_state(principal, device.id, {"power": "ON"}, source="api")
    assert (await core.outbox.stats()).pending == count


async def _deliveries(core: Core, principal: Principal, lamp: Device) -> int:
    page = await core.activity.list(principal, limit=200)
    return sum(entry.kind == "delivery" for entry in page.items)


def _dispatcher(
    core: Core, owner: str, sent: list[tuple[int, str]], **overrides: Any
) -> Dispatcher:
    config = DispatcherConfig(
        owner=owner,
        lease_seconds=LEASE,
        concurrency_per_destination=1,
        release_all_on_start=False,  # replicas: nobody frees another's live lease
        poll_seconds=0.05,
        **overrides,
    )
    return Dispatcher(core, {"webhook": SlowSink(owner, sent)}, config=config)


async def test_rows_waiting_behind_a_slow_destination_are_sent_once(
    app: web.Application,
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
) -> None:
    """The first dispatcher's backlog waits behind a hanging row for over two leases, and
    takes almost five leases in all; its leases are renewed, so the second, claiming all the
    while, never sends those rows: each is sent (and recorded) exactly once."""
    await app[DISPATCHER_KEY].stop()
    await make_hook(receiver.url(), event_types=["state.changed"])
    await _queue(core, principal, lamp, ROWS)
    sent: list[tuple[int, str]] = []
    # A full dispatcher (max_in_flight rows held, as 100 of 100 in production) claims no more,
    # so nothing but renewal keeps its waiting rows' leases alive.
    first = _dispatcher(core, "replica-1", sent, max_in_flight=ROWS)
    second = _dispatcher(core, "replica-2", sent, max_in_flight=ROWS)
    try:
        await first.start()
        await wait_until(lambda: first.in_flight == ROWS, timeout=2.0)
        await second.start()

        async def settled() -> bool:
            stats = await core.outbox.stats()
            return stats.pending == 0 and first.in_flight == 0 and second.in_flight == 0

        await wait_until(settled, timeout=10.0)
    finally:
        await first.stop()
        await second.stop()
    ids = [row for row, _ in sent]
    assert len(ids) == ROWS, f"rows sent more than once: {sorted(ids)}"
    assert len(set(ids)) == ROWS
    assert {sender for _, sender in sent} == {"replica-1"}

    async def all_recorded() -> bool:  # on disk with the next commit, or within a second
        return await _deliveries(core, principal, lamp) >= ROWS

    await wait_until(all_recorded, timeout=5.0)
    assert await _deliveries(core, principal, lamp) == ROWS
    assert (await core.outbox.stats()).dead == 0


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
async def test_rows_whose_lease_was_taken_are_neither_sent_nor_recorded(
    app: web.Application,
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
) -> None:
    """When another owner takes the rows (here: a second SQLite process starting, which frees
    every lease), the first dispatcher stops sending them and its late results are dropped."""
    await app[DISPATCHER_KEY].stop()
    await make_hook(receiver.url(), event_types=["state.changed"])
    await _queue(core, principal, lamp, 6)
    sent: list[tuple[int, str]] = []
    first = _dispatcher(core, "old-process", sent)
    try:
        await first.start()
        await wait_until(lambda: sent, timeout=2.0)
        assert await core.outbox.release(None) == 6
        taken = (await core.outbox.claim("new-process", lease_seconds=60.0, limit=10)).items
        assert len(taken) == 6
        await wait_until(lambda: first.in_flight == 0, timeout=3.0)
    finally:
        await first.stop()
    # The row being sent when its lease went (and at most one more, started before the next
    # renewal noticed) was sent; the others were dropped unsent. Nothing was recorded.
    assert 1 <= len(sent) <= 2
    assert await _deliveries(core, principal, lamp) == 0
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (6, 0)
    assert (await core.outbox.claim("someone-else", lease_seconds=60.0, limit=10)).items == []
