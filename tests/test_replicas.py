"""The outbox across replicas: two ``staterelay serve`` processes on one PostgreSQL database,
one killed with kill -9 while it is delivering.

Both replicas take state changes through their REST APIs and both deliver the outbox to a
recording webhook receiver on loopback. The receiver learns which process sent each request
from the socket the request came on (``/proc``), so the test knows exactly which copies came
from which replica. The checks:

- every acknowledged change's event arrives (matched on device id and version);
- no event arrives twice, except a row the killed replica had leased and not yet recorded
  when it died (seen in the outbox right after the kill); such a row arrives exactly once
  from the killed replica (before the kill) and exactly once from the survivor, and the
  survivor's copy only after that row's lease ran out;
- at least one row was in that state (the killed replica had a request at the receiver when
  it died), so the lease takeover is exercised, not just allowed;
- each device's events first arrive in the order they happened, whichever replica sent them
  (one ordering key is never delivered by two replicas at once);
- the outbox ends empty: nothing pending, nothing dead.

The replicas run with a short lease (``dispatch.lease_seconds``), so the test waits only
that long after the kill.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from staterelay.app.assemble import build_core
from staterelay.core.crypto import load_or_create_secret
from staterelay.settings import load_settings
from tests.conftest import make_account
from tests.postgres_support import (
    ScratchDatabase,
    fresh_database,
    require_postgres,
)
from tests.processes import ServerProcess, tcp_socket_owner
from tests.skips import unavailable

pytestmark = pytest.mark.slow
_LOGGER = logging.getLogger(__name__)

LEASE_SECONDS = 10.0  # dispatch.lease_seconds of both replicas
WRITERS = 8  # one device each; every writer alternates between the replicas
BEFORE_KILL = 150  # acknowledged changes before the kill (at least)
AFTER_KILL = 150  # and through the survivor after it
SLOW = (0.05, 0.2)  # the receiver's answer time while both replicas deliver


@dataclass
class Delivery:
    """One request the receiver got."""

    webhook_id: str
    body: dict[str, Any]
    sender: str  # "victim" or "survivor"
    arrived_wall: float  # time.time(), comparable with the outbox's lease_until
    arrived: float  # time.monotonic()


@dataclass
class Receiver:
    """A webhook endpoint that records every request and which replica sent it."""

    senders: dict[int, str]  # pid -> name
    victim: ServerProcess
    port: int = 0
    slow: bool = True
    deliveries: list[Delivery] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)
    unattributed: list[str] = field(default_factory=list)
    _by_transport: dict[int, tuple[object, str]] = field(default_factory=dict)

    def sender_of(self, request: web.Request) -> str:
        """The replica behind this request's connection (looked up once per connection)."""
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        key = id(transport)
        cached = self._by_transport.get(key)
        if cached is not None and cached[0] is transport:
            return cached[1]
        pid = None if peer is None else tcp_socket_owner(peer[1], self.port, self.senders)
        if pid is not None:
            name = self.senders[pid]
        elif self.victim.proc is not None and self.victim.proc.poll() is not None:
            # The survivor is alive and holds no such socket: the victim sent this and has
            # died since (its sockets are gone). Anything else is a failure of the test.
            name = "victim"
        else:
            name = "unknown"
            self.unattributed.append(repr(peer))
        self._by_transport[key] = (transport, name)
        return name

    async def handle(self, request: web.Request) -> web.Response:
        """Record the event on arrival, answer after a while (slowly while both run)."""
        sender = self.sender_of(request)
        body = await request.json()
        self.deliveries.append(
            Delivery(request.headers["webhook-id"], body, sender, time.time(), time.monotonic())
        )
        self.in_flight[sender] += 1
        try:
            await asyncio.sleep(random.uniform(*SLOW) if self.slow else 0.0)
        finally:
            self.in_flight[sender] -= 1
        return web.Response(status=204)


async def _prepare(database: ScratchDatabase, data_dir: Path) -> str:
    """Migrate as the owner, create a user and a write key as the app role; return the key.

    In-process (as ``staterelay db migrate``, ``user create`` and ``apikey create`` would do)
    to keep the test's fixed cost down: it already waits out a lease.
    """
    settings = load_settings(
        data_dir=data_dir,
        environ={
            "STATERELAY_DATABASE_URL": database.app_url,
            "STATERELAY_DATABASE_MIGRATE_URL": database.owner_url,
        },
    )
    core = build_core(settings, instance_secret=load_or_create_secret(settings.secret_key_path))
    await core.store.open()
    try:
        return (await make_account(core, "replicas@example.com")).key
    finally:
        await core.bus.close()
        await core.store.close()


async def _outbox(database: ScratchDatabase) -> list[asyncpg.Record]:
    """Every outbox row, read past row-level security (as the superuser)."""
    conn = await asyncpg.connect(database.admin_url)
    try:
        return await conn.fetch(
            "SELECT event_id, status, lease_owner, lease_until FROM outbox ORDER BY id"
        )
    finally:
        await conn.close()


async def test_outbox_across_replicas_with_kill_minus_nine(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    """Two replicas, one killed mid-delivery: everything arrives, only its in-flight twice."""
    if not sys.platform.startswith("linux"):
        unavailable("the receiver tells the replicas apart through /proc (Linux only)")
    require_postgres()

    async with fresh_database() as database:
        data_dir = tmp_path / "data"  # shared: both replicas need the same secret.key
        db_env = {"STATERELAY_DATABASE_URL": database.app_url}
        key = await _prepare(database, data_dir)
        env = {
            **db_env,
            "STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
            "STATERELAY_LOG_LEVEL": "warning",
            "STATERELAY_LIMITS_API_KEY_PER_MINUTE": "0",
            "STATERELAY_LIMITS_IP_PER_MINUTE": "0",
            "STATERELAY_DISPATCH_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        victim, survivor = ServerProcess(data_dir, env), ServerProcess(data_dir, env)
        try:
            await asyncio.gather(victim.start(), survivor.start())
            assert victim.proc is not None
            assert survivor.proc is not None
            receiver = Receiver({victim.proc.pid: "victim", survivor.proc.pid: "survivor"}, victim)
            app = web.Application()
            app.router.add_post("/hook", receiver.handle)
            target = await aiohttp_server(app)
            receiver.port = target.port
            await _drive_kill_and_check(database, key, victim, survivor, receiver)
            assert survivor.terminate() == 0
        finally:
            victim.ensure_stopped()
            survivor.ensure_stopped()


async def _drive_kill_and_check(
    database: ScratchDatabase,
    key: str,
    victim: ServerProcess,
    survivor: ServerProcess,
    receiver: Receiver,
) -> None:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    ) as http:
        async with http.post(
            f"{victim.url}/api/v1/webhooks",
            json={
                "url": f"http://127.0.0.1:{receiver.port}/hook",
                "event_types": ["state.changed"],
            },
        ) as response:
            assert response.status == 201, await response.text()
        devices: list[dict[str, Any]] = []
        for i in range(WRITERS):
            server = (victim, survivor)[i % 2]
            async with http.post(
                f"{server.url}/api/v1/devices", json={"type": "switch", "name": f"Replica {i}"}
            ) as response:
                assert response.status == 201, await response.text()
                devices.append(await response.json())

        acknowledged: set[tuple[str, int]] = set()
        killed = asyncio.Event()
        enough = asyncio.Event()

        async def writer(index: int, device: dict[str, Any]) -> None:
            """Flip one device, alternating replicas until the kill, then the survivor."""
            device_id = device["id"]
            version, power = device["version"], device["state"].get("power")
            mine = 0
            while not enough.is_set():
                server = survivor if killed.is_set() else (victim, survivor)[(mine + index) % 2]
                mine += 1
                value = "OFF" if power == "ON" else "ON"
                try:
                    async with http.put(
                        f"{server.url}/api/v1/devices/{device_id}/state", json={"power": value}
                    ) as response:
                        assert response.status == 200, await response.text()
                        state = await response.json()
                except (aiohttp.ClientError, TimeoutError):
                    if server is not victim:
                        raise
                    # Killed under this request: it may or may not have committed (it was
                    # not acknowledged). Read the device back through the survivor.
                    async with http.get(
                        f"{survivor.url}/api/v1/devices/{device_id}/state"
                    ) as response:
                        assert response.status == 200, await response.text()
                        state = await response.json()
                    version, power = state["version"], state["state"].get("power")
                    continue
                if state["version"] > version:
                    acknowledged.add((device_id, state["version"]))
                version, power = state["version"], state["state"].get("power")
                await asyncio.sleep(0.01)

        writers = [asyncio.create_task(writer(i, d)) for i, d in enumerate(devices)]
        try:
            # Kill the victim once enough changes were acknowledged through both replicas,
            # both have delivered, and the victim has a request at the receiver right now.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                senders = {d.sender for d in receiver.deliveries}
                if (
                    len(acknowledged) >= BEFORE_KILL
                    and {"victim", "survivor"} <= senders
                    and receiver.in_flight["victim"] > 0
                ):
                    break
                await asyncio.sleep(0.002)
            else:
                pytest.fail(
                    f"no moment to kill: {len(acknowledged)} acknowledged,"
                    f" in flight {dict(receiver.in_flight)}"
                )
            victim.kill()
            kill_time = time.monotonic()
            in_flight_at_kill = receiver.in_flight["victim"]
            killed.set()
            await asyncio.sleep(0.2)  # the database notices the dead connections
            snapshot = {row["event_id"]: row for row in await _outbox(database)}
            receiver.slow = False

            acknowledged_at_kill = len(acknowledged)
            deadline = time.monotonic() + 30
            while (
                len(acknowledged) < acknowledged_at_kill + AFTER_KILL
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
            enough.set()
            await asyncio.gather(*writers)
        finally:
            enough.set()
            for task in writers:
                task.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
        assert len(acknowledged) >= acknowledged_at_kill + AFTER_KILL

    # The survivor delivers its own backlog at once and the victim's leased rows once their
    # leases run out; wait for the outbox to empty (bounded: lease + a margin).
    deadline = kill_time + LEASE_SECONDS + 15
    rows: list[asyncpg.Record] = []
    while time.monotonic() < deadline:
        rows = await _outbox(database)
        if rows and all(row["status"] != "pending" for row in rows):
            break
        await asyncio.sleep(0.25)
    statuses = Counter(row["status"] for row in rows)
    assert statuses == {"delivered": len(rows)}, f"outbox not drained: {statuses}"
    await asyncio.sleep(0.3)  # the last answers are recorded just after they arrive

    assert not receiver.unattributed, f"requests from no replica: {receiver.unattributed}"
    deliveries = receiver.deliveries
    # Every acknowledged change arrived, and every row was delivered.
    seen = {(d.body["device"]["id"], d.body["version"]) for d in deliveries}
    missing = acknowledged - seen
    assert not missing, f"{len(missing)} acknowledged changes never arrived: {sorted(missing)[:5]}"
    assert {row["event_id"] for row in rows} == {d.webhook_id for d in deliveries}

    # Which rows the victim held (leased, unrecorded) when it died: its lease owner is the one
    # on the rows it was sending at that moment.
    by_id: defaultdict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        by_id[delivery.webhook_id].append(delivery)
    victim_owners = {
        snapshot[webhook_id]["lease_owner"]
        for webhook_id, copies in by_id.items()
        if any(c.sender == "victim" for c in copies)
        and webhook_id in snapshot
        and snapshot[webhook_id]["status"] == "pending"
    }
    assert len(victim_owners) == 1, f"the victim's lease owner is unclear: {victim_owners}"
    victim_owner = victim_owners.pop()
    assert victim_owner is not None
    held_by_victim = {
        event_id
        for event_id, row in snapshot.items()
        if row["status"] == "pending" and row["lease_owner"] == victim_owner
    }

    # The victim sent nothing after it died (a request it had written may be read just after).
    late = [d for d in deliveries if d.sender == "victim" and d.arrived > kill_time + 1.0]
    assert not late, f"requests from the victim after its death: {late[:3]}"
    twice = {webhook_id: copies for webhook_id, copies in by_id.items() if len(copies) > 1}
    for webhook_id, copies in twice.items():
        where = (
            f"event {webhook_id}: {[(c.sender, round(c.arrived - kill_time, 2)) for c in copies]}"
        )
        assert webhook_id in held_by_victim, f"delivered twice, not the victim's: {where}"
        assert [c.sender for c in copies] == ["victim", "survivor"], where
        first, second = copies
        lease_until = snapshot[webhook_id]["lease_until"]
        assert second.arrived_wall >= lease_until, f"taken before its lease ran out: {where}"
        assert first.body == second.body, where
    # Each device's events first arrived in version order, from whichever replica.
    firsts: defaultdict[str, list[int]] = defaultdict(list)
    seen_ids: set[str] = set()
    for delivery in deliveries:
        if delivery.webhook_id in seen_ids:
            continue
        seen_ids.add(delivery.webhook_id)
        firsts[delivery.body["device"]["id"]].append(delivery.body["version"])
    for device_id, versions in firsts.items():
        assert versions == sorted(versions), f"{device_id} out of order: {versions}"
    # The takeover happened: the rows at the receiver when the victim died came again.
    assert in_flight_at_kill >= 1
    assert len(twice) >= in_flight_at_kill
    assert len(twice) <= len(held_by_victim)
    # And nothing the victim held was lost.
    assert held_by_victim <= set(by_id)
    by_sender = Counter(d.sender for d in deliveries)
    _LOGGER.info(
        f"replicas: {len(acknowledged)} changes acknowledged, {len(rows)} rows,"
        f" {len(deliveries)} requests ({dict(by_sender)}); the victim held {len(held_by_victim)}"
        f" rows, {in_flight_at_kill} at the receiver, {len(twice)} delivered twice;"
        f" {time.monotonic() - started:.1f}s"
    )
    assert time.monotonic() - started < 85 - (60 - LEASE_SECONDS)
