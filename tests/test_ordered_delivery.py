"""Ordered delivery through faults: every Routine-trigger transition and every press reaches
Alexa, webhooks and IFTTT in the order it happened, with its own value and time.

A contact sensor goes DETECTED, NOT_DETECTED, DETECTED, NOT_DETECTED with a doorbell press in
the middle while the upstreams fail: a 503 window (the app's own dispatcher and retry
schedule, as a household runs it), then each scripted fault in turn (503, 429 with
Retry-After, a hang past the timeout, a dropped connection) on a dispatcher with short
retries. The recording upstreams must see each stream exactly once and in order, and each
row's activity entries must say what happened to it.
"""

# The Alexa and fault fixtures are imported by name, and tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from staterelay.app.factory import DISPATCHER_KEY
from staterelay.core import Core
from staterelay.core.records import ActivityEntry, Device
from tests.alexa.conftest import (  # noqa: F401 - fixtures, requested by name
    alexa_app,
    alexa_settings,
    assert_valid,
    browser,
    clock,
    core,
    granted,
    port,
    server,
    token,
    user,
)
from tests.ifttt.conftest import poll
from tests.oauth.conftest import Client
from tests.test_faults import (  # noqa: F401 - fixtures, requested by name
    RETRY_AFTER,
    Household,
    StartDispatcher,
    Upstreams,
    amazon,
    deliveries,
    dispatch,
    household,
    settings,
    upstreams,
    wait_until,
)

TRANSITIONS = ("DETECTED", "NOT_DETECTED", "DETECTED", "NOT_DETECTED")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def door_reports(upstreams: Upstreams, door: Device) -> list[tuple[str, float]]:
    """(detectionState, timeOfSample) of the accepted ChangeReports of the door, in order."""
    found = []
    for event in upstreams.amazon.accepted():
        body = event["event"]
        if body["header"]["name"] != "ChangeReport" or body["endpoint"]["endpointId"] != door.id:
            continue
        assert_valid(event)
        for prop in body["payload"]["change"]["properties"]:
            if prop["name"] == "detectionState":
                found.append((prop["value"], _epoch(prop["timeOfSample"])))
    return found


def presses(upstreams: Upstreams, bell: Device) -> int:
    """DoorbellPress events of the bell the gateway accepted."""
    return sum(
        1
        for event in upstreams.amazon.accepted()
        if event["event"]["header"]["name"] == "DoorbellPress"
        and event["event"]["endpoint"]["endpointId"] == bell.id
    )


async def act(core: Core, who: Household, door: Device, bell: Device) -> list[float]:
    """The four transitions with a press after the second; the times of the transitions."""
    times = []
    for n, value in enumerate(TRANSITIONS):
        changed = await core.devices.set_state(
            who.principal, door.id, {"detection": value}, source="api"
        )
        times.append(changed.properties["detection"].changed_at)
        if n == 1:
            await core.devices.press(who.principal, bell.id, source="api")
        await asyncio.sleep(0.01)
    return times


async def sensors(
    core: Core, browser: Client, who: Household, upstreams: Upstreams
) -> tuple[Device, Device]:
    """A door sensor IFTTT watches and a doorbell; their discovery reports are through."""
    door = await core.devices.create(
        who.principal, type="contact_sensor", name="Door", source="api"
    )
    bell = await core.devices.create(who.principal, type="button", name="Bell", source="api")
    body = {"triggerFields": {"device": door.id}, "trigger_identity": "ti-door"}
    status, _ = await poll(browser, who.ifttt, "sensor_value_changed", body)
    assert status == 200
    await upstreams.amazon.wait_events(3)  # the lamp's, the door's and the bell's
    return door, bell


async def drained(core: Core) -> bool:
    """Nothing left to send."""
    return (await core.outbox.stats()).pending == 0


async def check_streams(
    core: Core,
    who: Household,
    upstreams: Upstreams,
    door: Device,
    bell: Device,
    times: list[float],
) -> list[ActivityEntry]:
    """Every stream arrived once, in order; each door row ended delivered (202), none
    merged; returns the door's Alexa delivery entries."""
    reports = door_reports(upstreams, door)
    assert [value for value, _ in reports] == list(TRANSITIONS)
    assert [at for _, at in reports] == pytest.approx(times, abs=0.002)
    assert presses(upstreams, bell) == 1
    hooks = [b for b in upstreams.hooks.bodies if b["device"]["id"] == door.id]
    assert [(b["new"], b["version"]) for b in hooks] == [
        (value, n + 2) for n, value in enumerate(TRANSITIONS)
    ]
    entries = await deliveries(core, who, "alexa", door)
    finals = [e for e in entries if e.detail["outcome"] != "retry"]
    assert [(e.detail["outcome"], e.detail["status_code"]) for e in finals] == [
        ("delivered", 202)
    ] * 4
    assert len({e.detail["event_id"] for e in finals}) == 4
    stats = await core.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 0)
    return entries


async def check_ifttt(
    core: Core, browser: Client, who: Household, upstreams: Upstreams, door: Device
) -> None:
    """IFTTT was told of the door's changes after the faults and its poll shows all four
    transitions, newest first. Each Realtime row of the door ended notified (200) or merged,
    none dead; rows falling due together share one request, so there are at most as many
    accepted requests naming the door as notified rows."""
    entries = await deliveries(core, who, "ifttt", door)
    finals = [e for e in entries if e.detail["outcome"] != "retry"]
    notified_rows = [e for e in finals if e.detail["outcome"] == "delivered"]
    assert notified_rows, "no Realtime row of the door was notified"
    assert any(e.detail["outcome"] == "retry" for e in entries), "no Realtime row met a fault"
    assert {e.detail["status_code"] for e in notified_rows} == {200}
    assert all(e.detail["outcome"] in ("delivered", "merged") for e in finals)
    requests = [
        note
        for note in upstreams.realtime.received
        if "ti-door" in [entry["trigger_identity"] for entry in note.body["data"]]
    ]
    assert 1 <= len(requests) <= len(notified_rows)
    body = {"triggerFields": {"device": door.id}, "trigger_identity": "ti-door", "limit": 4}
    status, polled = await poll(browser, who.ifttt, "sensor_value_changed", body)
    assert status == 200
    assert [(e["value"], e["previous_value"]) for e in polled["data"]] == [
        ("NOT_DETECTED", "DETECTED"),
        ("DETECTED", "NOT_DETECTED"),
        ("NOT_DETECTED", "DETECTED"),
        ("DETECTED", "NOT_DETECTED"),
    ]


async def test_a_503_window_delays_transitions_but_keeps_their_order(
    browser: Client,
    core: Core,
    household: Household,
    upstreams: Upstreams,
    alexa_app: Any,
) -> None:
    """The issue's scenario, on the app's own dispatcher: every upstream answers 503 for
    1.5 s while the door goes through four transitions and the bell is pressed. Alexa gets
    the four transitions in order, each with its own time, and the press; the first retry
    comes within a second, later ones back off; the webhook gets every change in order."""
    door, bell = await sensors(core, browser, household, upstreams)
    for faults in upstreams.all_faults():
        faults.failing = "503"
    started = time.monotonic()
    times = await act(core, household, door, bell)
    await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    for faults in upstreams.all_faults():
        faults.failing = None
    await wait_until(lambda: drained(core), timeout=30)
    await wait_until(lambda: len(door_reports(upstreams, door)) == 4)
    entries = await check_streams(core, household, upstreams, door, bell, times)
    retries = [e for e in entries if e.detail["outcome"] == "retry"]
    assert retries, "the 503 window failed no report"
    first, *later = [e for e in retries if e.detail["event_id"] == entries[0].detail["event_id"]]
    wait = _epoch(first.detail["next_attempt_at"]) - first.created_at
    assert 0.4 <= wait <= 1.05  # within about a second: one failure still lands within 3 s
    for entry in later:
        assert _epoch(entry.detail["next_attempt_at"]) - entry.created_at >= 2.9
    assert all(e.detail["status_code"] == 503 for e in retries)
    await check_ifttt(core, browser, household, upstreams, door)
    assert alexa_app[DISPATCHER_KEY].in_flight == 0


@pytest.mark.parametrize("fault", ["503", "429", "hang", "close"])
async def test_every_fault_kind_keeps_transitions_in_order(
    browser: Client,
    core: Core,
    household: Household,
    upstreams: Upstreams,
    dispatch: StartDispatcher,
    fault: str,
) -> None:
    """Each upstream fails its next three requests with ``fault`` while the sequence runs:
    every stream still arrives once, in order, and 429 waits as long as Retry-After says."""
    await dispatch(first_retry_seconds=0.2)
    door, bell = await sensors(core, browser, household, upstreams)
    for faults in upstreams.all_faults():
        faults.met.clear()
        faults.script = [fault] * 3
    times = await act(core, household, door, bell)
    await wait_until(lambda: drained(core), timeout=40)
    await wait_until(lambda: len(door_reports(upstreams, door)) == 4)
    entries = await check_streams(core, household, upstreams, door, bell, times)
    assert all(f.met[:3] == [fault] * 3 for f in upstreams.all_faults())
    retries = [e for e in entries if e.detail["outcome"] == "retry"]
    expected_code = None if fault in ("hang", "close") else int(fault)
    assert {e.detail["status_code"] for e in retries} <= {expected_code}
    if fault == "429":
        for entry in retries:
            waited = _epoch(entry.detail["next_attempt_at"]) - entry.created_at
            assert waited == pytest.approx(RETRY_AFTER, abs=0.2)
    await check_ifttt(core, browser, household, upstreams, door)


async def test_a_failing_stream_holds_back_only_itself(
    browser: Client,
    core: Core,
    household: Household,
    upstreams: Upstreams,
    dispatch: StartDispatcher,
) -> None:
    """While the door's report waits for its retry (Retry-After 2 s), the lamp's changes
    (another endpoint) reach Alexa at once; the door's follow after, in order."""
    await dispatch()
    door, _bell = await sensors(core, browser, household, upstreams)
    upstreams.gateway_faults.met.clear()
    upstreams.gateway_faults.script = ["429"]
    await core.devices.set_state(
        household.principal, door.id, {"detection": "DETECTED"}, source="api"
    )
    await wait_until(lambda: upstreams.gateway_faults.met == ["429"])
    await core.devices.set_state(
        household.principal, door.id, {"detection": "NOT_DETECTED"}, source="api"
    )
    await core.devices.set_state(
        household.principal, household.lamp.id, {"power": "ON"}, source="api"
    )

    def lamp_reported() -> bool:
        return any(
            e["event"].get("endpoint", {}).get("endpointId") == household.lamp.id
            and e["event"]["header"]["name"] == "ChangeReport"
            for e in upstreams.amazon.accepted()
        )

    await wait_until(lamp_reported, timeout=0.9)  # well before the door's retry is due
    assert door_reports(upstreams, door) == []
    await wait_until(lambda: len(door_reports(upstreams, door)) == 2, timeout=10)
    assert [value for value, _ in door_reports(upstreams, door)] == ["DETECTED", "NOT_DETECTED"]
