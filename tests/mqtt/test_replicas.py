"""Two replicas on one PostgreSQL database run one bridge; the other takes over.

Both replicas take requests; only the one holding the advisory lock connects to the
broker and sends the outbox's events. When it stops, the other one takes the lock and
connects, and transitions made through either replica keep arriving in order. (A contact
sensor's transitions: a button cannot be created on PostgreSQL today, its empty
``last_pressed_at`` breaks a NOT NULL column; that is the store's, outside this bridge.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.integrations.mqtt import Bridge
from staterelay.integrations.mqtt.dashboard import BRIDGE_KEY
from staterelay.settings import DatabaseSettings, RedisSettings, Settings
from staterelay.store.postgres.leadership import PostgresLeadership, lock_key
from tests.conftest import make_account
from tests.mqtt.broker import Broker, subscriber
from tests.mqtt.conftest import HOUSEHOLD, mqtt_app, wait_for, with_mqtt
from tests.postgres_support import migrated_database
from tests.redis_support import SHARED_URL, redis_available
from tests.skips import unavailable

BASE = "staterelay"


async def replica(settings: Settings) -> TestClient[web.Request, web.Application]:
    """One replica served on loopback."""
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(mqtt_app(settings)))
    await client.start_server()
    return client


def leaders(*clients: TestClient[web.Request, web.Application]) -> list[Bridge]:
    """The bridges that lead and are connected."""
    bridges = [client.app[BRIDGE_KEY] for client in clients]
    return [bridge for bridge in bridges if bridge.leading and bridge.status.connected]


async def test_two_replicas_run_one_bridge_and_the_other_takes_over(
    settings: Settings, broker: Broker
) -> None:
    """Exactly one replica connects; transitions through the other one arrive through it; when
    it stops, the other replica takes the lock and the transitions keep coming, in order."""
    if not redis_available():
        unavailable("no Redis answers for the replicas' bus")
    async with migrated_database() as database:
        shared = dataclasses.replace(
            with_mqtt(settings, broker),
            database=DatabaseSettings(url=database.app_url),
            redis=RedisSettings(url=SHARED_URL, key_prefix=f"mqtt{uuid.uuid4().hex[:10]}"),
        )
        first = await replica(shared)
        second = await replica(shared)
        try:
            alice = await make_account(first.app[CORE_KEY], HOUSEHOLD)
            await wait_for(lambda: len(leaders(first, second)) == 1, seconds=20)
            await asyncio.sleep(0.5)
            assert len(leaders(first, second)) == 1
            leader, follower = (first, second) if first.app[BRIDGE_KEY].leading else (second, first)
            assert not follower.app[BRIDGE_KEY].status.connected
            created = await follower.post(
                "/api/v1/devices",
                json={"type": "contact_sensor", "name": "Door"},
                headers=alice.headers,
            )
            assert created.status == 201, await created.text()
            button = (await created.json())["id"]
            topic = f"{BASE}/{button}/event"
            pressed: list[int] = []

            async def press(client: TestClient[web.Request, web.Application]) -> None:
                value = "NOT_DETECTED" if len(pressed) % 2 else "DETECTED"
                response = await client.put(
                    f"/api/v1/devices/{button}/state",
                    json={"detection": value},
                    headers=alice.headers,
                )
                assert response.status == 200
                pressed.append((await response.json())["version"])

            async with subscriber(broker, topic, f"{BASE}/{button}/state") as recorder:
                for client in (follower, leader, follower):
                    await press(client)
                await recorder.wait(lambda: len(recorder.on(topic)) >= 3, seconds=20)
                # The follower's state change reached the leader's bridge over the bus.
                await recorder.wait(lambda: recorder.on(f"{BASE}/{button}/state"))
                await leader.close()
                await wait_for(lambda: follower.app[BRIDGE_KEY].status.connected, seconds=20)
                for _ in range(2):
                    await press(follower)
                await recorder.wait(lambda: len(recorder.on(topic)) >= 5, seconds=20)
                await asyncio.sleep(0.3)
                received = [message.json()["version"] for message in recorder.on(topic)]
            assert received == pressed
        finally:
            await first.close()
            await second.close()


async def test_the_lead_is_lost_with_its_connection(broker: Broker) -> None:
    """The advisory lock is one session's: while it lives nobody else leads the job; when
    its connection is killed, ``lost`` returns and another session gets the lead."""
    _ = broker
    async with migrated_database() as database:

        class Store(PostgresLeadership):
            leadership_check_seconds = 0.1

            def __init__(self, url: str) -> None:
                self.engine = type("Engine", (), {"url": url})()  # type: ignore[assignment]

        one, two = Store(database.app_url), Store(database.app_url)
        lead = await one.try_lead("job")
        assert lead is not None
        assert await two.try_lead("job") is None
        other_job = await two.try_lead("another job")
        assert other_job is not None
        await other_job.release()
        admin = await asyncpg.connect(database.admin_url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = ($1::bigint & 4294967295)::oid",
                lock_key("job"),
            )
            assert killed == 1
        finally:
            await admin.close()
        await asyncio.wait_for(lead.lost(), 10)
        taken = await two.try_lead("job")
        assert taken is not None
        await taken.release()
        again = await one.try_lead("job")
        assert again is not None
        await again.release()


_ = (Path, pytest)
