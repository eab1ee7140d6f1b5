"""Realtime notifications: coalescing, batching, retries, restarts, and the activity log."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.core import Core
from staterelay.core.records import ActivityEntry, Device
from staterelay.core.records.ifttt import TriggerIdentity
from staterelay.settings import Settings
from tests.ifttt.conftest import (
    DEBOUNCE,
    Client,
    DeviceFactory,
    Linked,
    MovableClock,
    Realtime,
    ifttt_settings,
    link,
    poll,
    realtime_app,
    set_state,
    wait_until,
)
from tests.processes import free_port

ServerFactory = Callable[..., Awaitable[TestServer]]


async def deliveries(core: Core, who: Linked, device: Device) -> list[ActivityEntry]:
    """The device's IFTTT delivery rows, oldest first."""
    page = await core.activity.list(who.principal, device_id=device.id, limit=100)
    rows = [e for e in page.items if e.kind == "delivery" and e.detail.get("sink") == "ifttt"]
    return list(reversed(rows))


async def watch(client: Client, who: Linked, device: Device, identity: str) -> None:
    """Poll power_changed for ``device`` as ``identity`` (IFTTT enabling an Applet)."""
    body = {"triggerFields": {"device": device.id}, "trigger_identity": identity}
    assert (await poll(client, who, "power_changed", body))[0] == 200


async def test_delivery_is_logged_on_the_device(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, realtime: Realtime
) -> None:
    """Each attempt is a ``delivery`` activity row of the device with IFTTT's status."""
    lamp = await make_device()
    await watch(client, alice, lamp, "ti-log")
    await set_state(core, alice, lamp, power="ON")
    rows = await wait_until(lambda: deliveries(core, alice, lamp))
    assert rows[0].detail["outcome"] == "delivered"
    assert rows[0].detail["status_code"] == 200
    assert rows[0].detail["event_type"] == "ifttt.realtime"
    assert rows[0].source == "system"


async def test_changes_in_one_window_make_one_row_and_one_request(
    client: Client,
    core: Core,
    app: web.Application,
    alice: Linked,
    make_device: DeviceFactory,
    realtime: Realtime,
    clock: MovableClock,
) -> None:
    """Ten changes of two devices inside one debounce window: one outbox row per device,
    both due at the window's end, and a single request naming both identities once."""
    lamp = await make_device()
    hall = await make_device(name="Hall")
    await watch(client, alice, lamp, "ti-lamp")
    await watch(client, alice, hall, "ti-hall")
    start = (math.floor(clock() / DEBOUNCE) + 0.25) * DEBOUNCE
    clock.freeze(start)
    for n in range(5):
        await set_state(core, alice, lamp, power="ON" if n % 2 == 0 else "OFF")
        await set_state(core, alice, hall, power="ON" if n % 2 == 0 else "OFF")
    stats = await core.store.outbox_stats()
    assert stats.pending == 2
    await asyncio.sleep(0.2)
    assert realtime.received == []  # not due: the window is still open
    clock.advance(DEBOUNCE)
    app[DISPATCHER_KEY].wake()
    await wait_until(lambda: realtime.received)

    async def both_recorded() -> bool:  # results are on disk within a second (SQLite)
        found = [await deliveries(core, alice, device) for device in (lamp, hall)]
        return all(found)

    await wait_until(both_recorded)
    [note] = realtime.received
    assert sorted(entry["trigger_identity"] for entry in note.body["data"]) == [
        "ti-hall",
        "ti-lamp",
    ]
    assert len(await deliveries(core, alice, lamp)) == 1
    assert len(await deliveries(core, alice, hall)) == 1


async def test_more_than_1000_identities_go_in_requests_of_at_most_1000(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, realtime: Realtime
) -> None:
    """1,500 identities watching one device: every request carries at most 1,000, each
    identity is named exactly once, and the two requests go out together."""
    lamp = await make_device()
    now = core.clock()
    await asyncio.gather(
        *(
            core.store.save_ifttt_identity(
                TriggerIdentity(
                    tenant_id=alice.principal.tenant_id,
                    user_id=alice.principal.user_id,
                    identity=f"ti-{n:04d}",
                    trigger="power_changed",
                    fields={"device": lamp.id},
                    device_id=lamp.id,
                    kind="power",
                    threshold=None,
                    created_at=now,
                    last_polled_at=now,
                )
            )
            for n in range(1500)
        )
    )
    await set_state(core, alice, lamp, power="ON")
    await wait_until(lambda: len(realtime.identities()) >= 1500)
    await asyncio.sleep(0.2)
    assert all(len(note.body["data"]) <= 1000 for note in realtime.received)
    assert len(realtime.received) == 2
    assert sorted(realtime.identities()) == [f"ti-{n:04d}" for n in range(1500)]


async def test_threshold_identities_hear_only_of_crossings(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, realtime: Realtime
) -> None:
    """A temperature_crossed_threshold identity is notified when the reading crosses its
    threshold in its direction, not while it stays above or when it falls."""
    porch = await make_device(type="temperature_sensor", name="Porch")
    fields = {"device": porch.id, "direction": "above", "threshold": "25"}
    body = {"triggerFields": fields, "trigger_identity": "ti-hot"}
    assert (await poll(client, alice, "temperature_crossed_threshold", body))[0] == 200
    for value in (21, 24, 20):
        await set_state(core, alice, porch, temperature=value)
    await asyncio.sleep(0.3)
    assert realtime.received == []
    await set_state(core, alice, porch, temperature=26)
    await wait_until(lambda: realtime.received)
    await set_state(core, alice, porch, temperature=28)
    await asyncio.sleep(0.3)
    assert realtime.identities() == ["ti-hot"]


async def test_deleted_identities_and_other_households_are_not_notified(
    client: Client,
    core: Core,
    alice: Linked,
    mallory: Linked,
    make_device: DeviceFactory,
    realtime: Realtime,
) -> None:
    """After IFTTT's DELETE an identity hears nothing more; an identity polled by another
    household's user for this device id reads nothing and is never notified."""
    lamp = await make_device()
    await watch(client, alice, lamp, "ti-gone")
    await watch(client, mallory, lamp, "ti-mallory")
    deleted = await client.delete(
        "/ifttt/v1/triggers/power_changed/trigger_identity/ti-gone", headers=alice.headers
    )
    assert deleted.status == 200
    await set_state(core, alice, lamp, power="ON")
    await asyncio.sleep(0.4)
    assert realtime.received == []
    _, body = await poll(client, mallory, "power_changed", {"triggerFields": {"device": lamp.id}})
    assert body == {"data": []}


async def test_ifttt_answering_503_is_retried_and_both_attempts_are_logged(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, realtime: Realtime
) -> None:
    """A 503 from IFTTT leaves the row to the outbox's retry; the retry delivers it."""
    realtime.script = [503]
    lamp = await make_device()
    await watch(client, alice, lamp, "ti-retry")
    await set_state(core, alice, lamp, power="ON")
    await wait_until(lambda: len(realtime.received) == 2, timeout=15)
    rows = await wait_until(lambda: _has(deliveries(core, alice, lamp), 2), timeout=5)
    assert [row.detail["outcome"] for row in rows] == ["retry", "delivered"]
    assert rows[0].detail["status_code"] == 503
    assert rows[0].detail["error"] == "IFTTT answered 503"
    assert realtime.received[0].body == realtime.received[1].body
    assert (
        realtime.received[0].headers["X-Request-ID"] != realtime.received[1].headers["X-Request-ID"]
    )


async def _has(rows: Awaitable[list[ActivityEntry]], count: int) -> list[ActivityEntry] | None:
    found = await rows
    return found if len(found) >= count else None


async def test_ifttt_down_then_a_restart_then_ifttt_back_delivers_the_waiting_nudge(
    aiohttp_server: ServerFactory, settings: Settings
) -> None:
    """IFTTT is unreachable, the attempt fails and is logged; StateRelay restarts (a second
    app on the same settings); once IFTTT answers again the waiting row is delivered."""
    port = free_port()
    down = ifttt_settings(settings, f"http://127.0.0.1:{port}/v1/notifications")
    first = create_app(down)
    async with TestClient(TestServer(first)) as client:
        core = first[CORE_KEY]
        alice = await link(core, "alice@example.com")
        lamp = await core.devices.create(alice.principal, type="switch", name="Lamp", source="api")
        await watch(client, alice, lamp, "ti-restart")
        await set_state(core, alice, lamp, power="ON")
        [failed] = await wait_until(lambda: deliveries(core, alice, lamp))
        assert failed.detail["outcome"] == "retry"
        assert failed.detail["status_code"] is None
        assert failed.detail["error"].startswith("connection to IFTTT failed")
    recorder = Realtime()
    recorder.server = await aiohttp_server(realtime_app(recorder), port=port)
    second = create_app(down)
    async with TestClient(TestServer(second)):
        core = second[CORE_KEY]
        alice.principal = await core.auth.authenticate(alice.token)
        await wait_until(lambda: recorder.received, timeout=15)
        assert recorder.identities() == ["ti-restart"]
        rows = await wait_until(lambda: _has(deliveries(core, alice, lamp), 2))
        assert [row.detail["outcome"] for row in rows] == ["retry", "delivered"]
        await set_state(core, alice, lamp, power="OFF")
        await wait_until(lambda: len(recorder.received) == 2)


async def test_without_a_service_key_nothing_is_queued_or_sent(
    aiohttp_server: ServerFactory, settings: Settings, realtime: Realtime
) -> None:
    """No service key: IFTTT cannot have been set up, so changes queue no notifications."""
    bare = ifttt_settings(settings, realtime.url, service_key=None)
    app = create_app(bare)
    async with TestClient(TestServer(app)) as client:
        core = app[CORE_KEY]
        alice = await link(core, "alice@example.com")
        lamp = await core.devices.create(alice.principal, type="switch", name="Lamp", source="api")
        await watch(client, alice, lamp, "ti-none")
        await set_state(core, alice, lamp, power="ON")
        assert (await core.store.outbox_stats()).pending == 0
        status = await client.get("/ifttt/v1/status", headers={"IFTTT-Service-Key": ""})
        assert status.status == 503
        assert "ifttt.service_key" in (await status.json())["errors"][0]["message"]
        setup = await client.post("/ifttt/v1/test/setup", headers={"IFTTT-Service-Key": "x"})
        assert setup.status == 503
    assert realtime.received == []


async def test_a_nudge_older_than_an_hour_is_dropped_not_sent(
    client: Client,
    core: Core,
    app: web.Application,
    alice: Linked,
    make_device: DeviceFactory,
    realtime: Realtime,
    clock: MovableClock,
) -> None:
    """A notification only asks IFTTT to poll; one an hour late is worthless and dropped."""
    lamp = await make_device()
    await watch(client, alice, lamp, "ti-stale")
    clock.freeze(clock())
    await set_state(core, alice, lamp, power="ON")
    clock.advance(2 * 3600)
    app[DISPATCHER_KEY].wake()
    rows = await wait_until(lambda: deliveries(core, alice, lamp))
    assert rows[0].detail["outcome"] == "dead"
    assert "stale" in rows[0].detail["error"]
    assert realtime.received == []


async def test_revoking_ifttt_stops_realtime_and_drops_identities(
    client: Client,
    core: Core,
    alice: Linked,
    make_device: DeviceFactory,
    realtime: Realtime,
    clock: MovableClock,
) -> None:
    """Unlinking IFTTT (Settings > Linked apps or DELETE /api/v1/grants/{id}): the user's
    trigger identities are dropped, a notification queued while IFTTT was failing is not
    sent, later changes notify nothing, and IFTTT's token no longer works."""
    lamp = await make_device()
    await watch(client, alice, lamp, "ti-gone")
    realtime.script = [503] * 50
    await set_state(core, alice, lamp, power="ON")
    await wait_until(lambda: realtime.received)
    assert (await core.outbox.stats()).pending == 1  # waiting for its retry
    headers = {"Authorization": f"Bearer {alice.api_key}"}
    grants = await (await client.get("/api/v1/grants", headers=headers)).json()
    [grant_id] = [g["id"] for g in grants["items"]]
    assert (await client.delete(f"/api/v1/grants/{grant_id}", headers=headers)).status == 204
    assert (await core.outbox.stats()).pending == 0
    [identity] = await core.store.list_ifttt_identities(
        alice.principal.tenant_id, alice.principal.user_id
    )
    assert identity.deleted_at is not None
    realtime.script = []
    sent = len(realtime.received)
    await set_state(core, alice, lamp, power="OFF")
    clock.advance(DEBOUNCE * 2)
    await asyncio.sleep(0.3)
    assert len(realtime.received) == sent
    assert (await core.outbox.stats()).pending == 0
    body = {"triggerFields": {"device": lamp.id}, "trigger_identity": "ti-gone"}
    status, _ = await poll(client, alice, "power_changed", body)
    assert status == 401


async def test_one_users_notifications_keep_their_order_through_a_failure(
    client: Client,
    core: Core,
    app: web.Application,
    alice: Linked,
    make_device: DeviceFactory,
    realtime: Realtime,
    clock: MovableClock,
) -> None:
    """A failed notification of a user is retried before any later one of theirs goes out;
    changes of two devices in one window still go out together."""
    lamp = await make_device()
    hall = await make_device(name="Hall")
    await watch(client, alice, lamp, "ti-lamp")
    await watch(client, alice, hall, "ti-hall")
    realtime.script = [503]
    await set_state(core, alice, lamp, power="ON")
    await wait_until(lambda: realtime.received)
    await set_state(core, alice, hall, power="ON")
    await wait_until(lambda: len(realtime.received) >= 2, timeout=10)
    await asyncio.sleep(0.3)
    batches = [
        sorted(entry["trigger_identity"] for entry in note.body["data"])
        for note in realtime.received
    ]
    # The retried lamp notification goes out with (or before) the hall's, never after it.
    assert batches[0] == ["ti-lamp"]
    assert batches[1] in (["ti-hall", "ti-lamp"], ["ti-lamp"])
    assert [identity for batch in batches[1:] for identity in batch].count("ti-hall") == 1
