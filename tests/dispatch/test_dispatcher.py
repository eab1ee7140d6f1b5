"""The dispatcher end to end: state changes become signed deliveries, retried and recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook as StandardWebhook

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import DISPATCHER_KEY, create_app
from staterelay.core import Core
from staterelay.core.records import ActivityEntry, Device, Principal
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.settings import Settings
from tests.conftest import make_account
from tests.dispatch.conftest import HookFactory, Receiver, StartDispatcher, wait_until
from tests.processes import free_port

ClientFactory = Callable[..., Any]


async def deliveries_of(core: Core, principal: Principal, device: Device) -> list[ActivityEntry]:
    """The device's delivery activity, oldest first."""
    page = await core.activity.list(principal, device_id=device.id, limit=200)
    return [entry for entry in reversed(page.items) if entry.kind == "delivery"]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_state_change_is_delivered_signed_and_recorded(
    core: Core, principal: Principal, lamp: Device, make_hook: HookFactory, receiver: Receiver
) -> None:
    """The app's own dispatcher sends a verifiable event and logs the result twice over."""
    webhook, secret = await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api", cause="test")
    await wait_until(lambda: receiver.requests)
    [request] = receiver.requests
    body = json.loads(request.body)
    assert StandardWebhook(secret).verify(request.body, request.headers) == body
    assert body == {
        "id": request.headers["webhook-id"],
        "type": "state.changed",
        "device": {"id": lamp.id, "name": "Hall lamp", "type": "switch"},
        "property": "power",
        "old": "OFF",
        "new": "ON",
        "cause": "test",
        "source": "api",
        "version": 2,
        "timestamp": body["timestamp"],
    }
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10

    async def recorded() -> list[ActivityEntry]:
        return await deliveries_of(core, principal, lamp)

    [entry] = await wait_until(recorded)
    assert entry.source == "system"
    assert entry.actor is None
    assert entry.device_name == "Hall lamp"
    assert entry.detail == {
        "sink": "webhook",
        "destination": webhook.id,
        "event_id": body["id"],
        "event_type": "state.changed",
        "status_code": 204,
        "error": None,
        "attempt": 1,
        "outcome": "delivered",
        "duration_ms": entry.detail["duration_ms"],
    }
    history = await core.webhooks.deliveries(principal, webhook.id, cursor=None, limit=10)
    assert [(d.event_id, d.attempt, d.status_code, d.error) for d in history.items] == [
        (body["id"], 1, 204, None)
    ]
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 0)


async def test_retries_keep_the_webhook_id_and_back_off(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """500, 500, then 200: three requests with one webhook-id, growing pauses, full history."""
    await start_dispatcher(retry_base_seconds=0.1, retry_factor=3.0)
    receiver.script = [500, 500]
    webhook, secret = await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await wait_until(lambda: len(receiver.requests) == 3)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        StandardWebhook(secret).verify(request.body, request.headers)
    first_gap = receiver.requests[1].at - receiver.requests[0].at
    second_gap = receiver.requests[2].at - receiver.requests[1].at
    assert 0.05 <= first_gap < second_gap
    assert 0.15 <= second_gap < 1.0

    async def three() -> list[ActivityEntry] | None:
        entries = await deliveries_of(core, principal, lamp)
        return entries if len(entries) == 3 else None

    entries = await wait_until(three)
    assert [e.detail["outcome"] for e in entries] == ["retry", "retry", "delivered"]
    assert [e.detail["status_code"] for e in entries] == [500, 500, 204]
    assert [e.detail["attempt"] for e in entries] == [1, 2, 3]
    delays = [_epoch(e.detail["next_attempt_at"]) - e.created_at for e in entries[:2]]
    assert 0.04 <= delays[0] <= 0.11
    assert 0.14 <= delays[1] <= 0.31
    assert "next_attempt_at" not in entries[2].detail
    history = await core.webhooks.deliveries(principal, webhook.id, cursor=None, limit=10)
    assert [(d.attempt, d.status_code) for d in history.items] == [(3, 204), (2, 500), (1, 500)]
    assert history.items[1].error == "the receiver answered 500"


async def test_retry_after_sets_the_next_attempt(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """429 with Retry-After: 120 schedules the next attempt two minutes out, not sooner."""
    await start_dispatcher()
    await make_hook(receiver.url("/busy"))
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")

    async def recorded() -> list[ActivityEntry]:
        return await deliveries_of(core, principal, lamp)

    [entry] = await wait_until(recorded)
    assert entry.detail["outcome"] == "retry"
    assert entry.detail["status_code"] == 429
    assert _epoch(entry.detail["next_attempt_at"]) - entry.created_at == pytest.approx(
        120, abs=0.01
    )
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1


async def test_row_is_dead_after_max_attempts(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver that always fails gets max_attempts tries; the last is logged as dead."""
    caplog.set_level(logging.WARNING, logger="staterelay.dispatch.dispatcher")
    await start_dispatcher(max_attempts=2, retry_base_seconds=0.05)
    receiver.default = 500
    await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")

    async def two() -> list[ActivityEntry] | None:
        entries = await deliveries_of(core, principal, lamp)
        return entries if len(entries) == 2 else None

    entries = await wait_until(two)
    assert [e.detail["outcome"] for e in entries] == ["retry", "dead"]
    assert entries[1].detail["error"] == "the receiver answered 500; giving up after 2 attempts"
    assert "next_attempt_at" not in entries[1].detail
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 2
    assert (await core.outbox.stats()).dead == 1
    assert any("is dead after 2 attempts" in r.getMessage() for r in caplog.records)


async def test_row_older_than_max_age_is_dead_without_a_request(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """An event queued longer than max_age is not sent late; the log says why."""
    await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await asyncio.sleep(0.1)
    await start_dispatcher(max_age_seconds=0.05)

    async def recorded() -> list[ActivityEntry]:
        return await deliveries_of(core, principal, lamp)

    [entry] = await wait_until(recorded)
    assert entry.detail["outcome"] == "dead"
    assert entry.detail["status_code"] is None
    assert entry.detail["error"] == "not sent: the event is older than 0.05 s"
    assert receiver.requests == []


async def test_retry_past_max_age_gives_up(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """A failure whose next retry would fall after max_age is the last attempt."""
    await start_dispatcher(max_age_seconds=1.0, retry_base_seconds=10.0)
    receiver.default = 503
    await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")

    async def recorded() -> list[ActivityEntry]:
        return await deliveries_of(core, principal, lamp)

    [entry] = await wait_until(recorded)
    assert entry.detail["outcome"] == "dead"
    assert entry.detail["status_code"] == 503
    assert entry.detail["error"] == (
        "the receiver answered 503; giving up: the next retry would pass the 1 s limit"
    )


async def test_410_disables_the_webhook_and_kills_the_row(
    core: Core, principal: Principal, lamp: Device, make_hook: HookFactory, receiver: Receiver
) -> None:
    """After a 410 the webhook is off, the row is dead, and later changes send nothing."""
    webhook, _ = await make_hook(receiver.url("/gone"))
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")

    async def recorded() -> list[ActivityEntry]:
        return await deliveries_of(core, principal, lamp)

    [entry] = await wait_until(recorded)
    assert entry.detail["outcome"] == "dead"
    assert entry.detail["status_code"] == 410
    assert not (await core.webhooks.get(principal, webhook.id)).enabled
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
    assert (await core.outbox.stats()).pending == 0


async def test_deleted_webhook_pending_rows_are_not_delivered(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """Rows queued for a webhook deleted before they were sent never go out."""
    webhook, _ = await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    assert (await core.outbox.stats()).pending == 2
    await core.webhooks.delete(principal, webhook.id)
    await start_dispatcher()
    await asyncio.sleep(0.3)
    assert receiver.requests == []
    assert (await core.outbox.stats()).pending == 0


async def test_rows_without_a_sink_are_dead(
    app: web.Application,
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """A row for a sink this process does not run is dead with a plain error."""
    await make_hook(receiver.url())
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    dispatcher = Dispatcher(core, {}, config=DispatcherConfig(owner="sinkless"))
    await dispatcher.start()
    try:

        async def recorded() -> list[ActivityEntry]:
            return await deliveries_of(core, principal, lamp)

        [entry] = await wait_until(recorded)
    finally:
        await dispatcher.stop()
    assert entry.detail["outcome"] == "dead"
    assert entry.detail["error"] == "not sent: no sink named 'webhook'"
    assert receiver.requests == []


async def test_concurrency_per_destination_is_respected(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """Events of six devices for one slow webhook are sent at most two at a time."""
    await make_hook(receiver.url("/slow"), event_types=["state.changed"])
    for i in range(6):
        device = await core.devices.create(
            principal, type="switch", name=f"Switch {i}", source="api"
        )
        await core.devices.set_state(principal, device.id, {"power": "ON"}, source="api")
    await start_dispatcher(concurrency_per_destination=2)
    await wait_until(lambda: len(receiver.requests) == 6)
    assert receiver.max_active == 2


async def test_rows_queued_behind_a_dead_receiver_fail_fast(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """After one timeout, rows of other devices waiting for the same destination fail at
    once, not one by one."""
    await make_hook(receiver.url("/hang"), event_types=["state.changed"])
    devices = [lamp]
    for i in range(3):
        devices.append(
            await core.devices.create(principal, type="switch", name=f"Switch {i}", source="api")
        )
    for device in devices:
        await core.devices.set_state(principal, device.id, {"power": "ON"}, source="api")
    started = time.monotonic()
    await start_dispatcher(
        concurrency_per_destination=1, timeout_seconds=0.3, retry_base_seconds=60.0
    )

    async def four() -> list[ActivityEntry] | None:
        page = await core.activity.list(principal, limit=200)
        entries = [entry for entry in page.items if entry.kind == "delivery"]
        return entries if len(entries) == 4 else None

    entries = await wait_until(four)
    assert time.monotonic() - started < 1.5
    assert len(receiver.requests) == 1
    errors = sorted(e.detail["error"] for e in entries)
    assert errors[-1] == "timed out: no answer within 0.3 s"
    assert all(
        e.startswith("not sent: the previous attempt moments ago failed") for e in errors[:3]
    )
    assert all(e.detail["outcome"] == "retry" for e in entries)


async def test_stop_is_bounded_and_frees_the_lease(
    core: Core,
    principal: Principal,
    lamp: Device,
    make_hook: HookFactory,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> None:
    """stop() abandons a hung delivery after its budget; the row is claimable again, unspent."""
    dispatcher = await start_dispatcher(timeout_seconds=30.0, stop_timeout_seconds=0.3)
    await make_hook(receiver.url("/hang"))
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await wait_until(lambda: receiver.requests)
    started = time.monotonic()
    await dispatcher.stop()
    assert time.monotonic() - started < 2.0
    assert dispatcher.in_flight == 0
    [item] = (await core.outbox.claim("someone-else", lease_seconds=5, limit=10)).items
    assert item.attempts == 0
    assert await deliveries_of(core, principal, lamp) == []
    dispatcher.wake()  # harmless after stop
    await dispatcher.stop()  # idempotent


async def test_pending_rows_survive_a_restart(
    settings: Settings, aiohttp_client: ClientFactory, receiver: Receiver
) -> None:
    """Rows left by a stopped app (receiver down) and by a killed one are sent by the next app."""
    first: TestClient[web.Request, web.Application] = await aiohttp_client(create_app(settings))
    core = first.app[CORE_KEY]
    account = await make_account(core, "restart@example.com")
    principal = await core.auth.authenticate(account.key)
    lamp = await core.devices.create(principal, type="switch", name="Porch", source="api")
    shed = await core.devices.create(principal, type="switch", name="Shed", source="api")
    await core.devices.set_state(principal, shed.id, {"power": "ON"}, source="api")
    webhook, _ = await core.webhooks.create(
        principal, {"url": f"http://127.0.0.1:{free_port()}/hook"}
    )
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")

    async def failed_once() -> bool:
        history = await core.webhooks.deliveries(principal, webhook.id, cursor=None, limit=5)
        return bool(history.items)

    await wait_until(failed_once)  # the receiver is down: the row waits for its retry
    await first.app[DISPATCHER_KEY].stop()
    # Another device's change (its own ordering key) is being sent by a process that is
    # killed: it leaves its lease behind; an hour-long one stands in for it.
    await core.devices.set_state(principal, shed.id, {"power": "OFF"}, source="api")
    ghost = (await core.outbox.claim("killed-process", lease_seconds=3600, limit=10)).items
    assert "OFF" in [item.payload["new"] for item in ghost]
    await core.webhooks.update(principal, webhook.id, {"url": receiver.url()})
    await first.close()
    assert receiver.requests == []

    # Ten minutes later: the retry is due; the ghost's lease is not over, yet it is released.
    second: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(settings, clock=lambda: time.time() + 600)
    )
    try:
        await wait_until(lambda: len(receiver.requests) == 2)
        assert sorted(json.loads(r.body)["new"] for r in receiver.requests) == ["OFF", "ON"]

        async def settled() -> bool:
            stats = await second.app[CORE_KEY].outbox.stats()
            return (stats.pending, stats.dead) == (0, 0)

        await wait_until(settled)
    finally:
        await second.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"concurrency_per_destination": 0},
        {"max_in_flight": 0},
        {"batch_size": 0},
        {"lease_seconds": 0},
        {"poll_seconds": float("nan")},
        {"retry_factor": 0.5},
        {"retry_base_seconds": 10.0, "retry_cap_seconds": 5.0},
        {"stop_timeout_seconds": -1.0},
    ],
)
def test_config_refuses_settings_that_would_stall_or_spin(bad: dict[str, Any]) -> None:
    """A config that could never deliver, or would busy-loop, fails at construction."""
    with pytest.raises(ValueError, match="must"):
        DispatcherConfig(owner="x", **bad)


async def test_stop_without_start_is_a_no_op(core: Core) -> None:
    """Stopping a dispatcher that never started returns at once and touches nothing."""
    dispatcher = Dispatcher(core, {}, config=DispatcherConfig(owner="idle"))
    dispatcher.wake()
    await dispatcher.stop()
    assert dispatcher.in_flight == 0
