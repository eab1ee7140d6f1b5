"""Alexa benchmarks: directives and ReportState through ``staterelay serve``, the time from
an API state change to its ChangeReport reaching a loopback event gateway, and the same for
Routine-trigger transitions while the gateway fails a fifth of its requests at random
(every transition must arrive, in order).

Usage: ``python bench/alexa.py [--duration 5] [--rounds 5] [--connections 32]
[--changes 1000] [--transitions 500]``. Needs ``wrk`` on PATH. Login with Amazon and the
event gateway are a recording aiohttp server on 127.0.0.1 in this process; everything is
bounded in time and count. The bare-aiohttp baseline (``bench/baseline_app.py``) runs
beside StateRelay, and every directive or ReportState run is measured between two runs of
it (``run.bracketed``): the ratios are taken against the baseline of that same minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from linking import oauth_token  # bench/ is not a package: these sit beside this file
from loopback import LoopbackApp
from run import (
    BaselineServer,
    Result,
    api,
    bracketed,
    cli,
    run_wrk,
    start_staterelay,
    stop,
    wait_ready,
)

RELAY_SECRET = "bench-relay-secret-0123456789abcdef"
SECRET_HEADER = "X-StateRelay-Relay-Secret"
CORRELATION = "dFMb0z+PgpgdDmluhJ1LddFvSqZ/jCc8ptlAKulUj90jSqg=="

DIRECTIVES_LUA = """
local n = 0
local bodies = {TURN_ON, TURN_OFF}
request = function()
  n = n + 1
  return wrk.format("POST", wrk.path, wrk.headers, bodies[(n % 2) + 1])
end
"""


class Gateway(LoopbackApp):
    """Login with Amazon and the Alexa event gateway on loopback, in a thread of this process."""

    what = "ChangeReport"

    def __init__(self) -> None:
        super().__init__()
        self.fail_rate = 0.0  # the share of ChangeReports answered 503, at random
        self.failed = 0
        self.detections: dict[str, list[tuple[str, float]]] = {}  # accepted, in arrival order

    def add_routes(self, app: web.Application) -> None:
        """Its endpoints."""
        app.router.add_post("/auth/o2/token", self._token)
        app.router.add_post("/v3/events", self._event)

    async def _token(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": "Atza|bench", "refresh_token": "Atzr|bench", "expires_in": 3600}
        )

    async def _event(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        event = (await request.json())["event"]
        if event["header"]["name"] == "ChangeReport":
            if random.random() < self.fail_rate:
                self.failed += 1
                return web.json_response(
                    {"payload": {"code": "SERVICE_UNAVAILABLE_EXCEPTION"}}, status=503
                )
            endpoint = event["endpoint"]["endpointId"]
            for prop in event["payload"]["change"]["properties"]:
                with self.condition:
                    if prop["name"] == "powerState":
                        self.reports += 1
                        self.arrivals.setdefault((endpoint, prop["value"]), arrived)
                    elif prop["name"] == "detectionState":
                        self.reports += 1
                        self.detections.setdefault(endpoint, []).append((prop["value"], arrived))
                    self.condition.notify_all()
        return web.Response(status=202)

    def wait_detections(self, count: int, timeout: float) -> None:
        """Wait until ``count`` detectionState reports were accepted in all."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while sum(map(len, self.detections.values())) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.condition.wait(left)


def drain(database: Path, limit: float = 60.0) -> int:
    """Wait until the outbox has nothing pending (read-only peek); returns what is left."""
    end = time.monotonic() + limit
    pending = -1
    while time.monotonic() < end:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            pending = int(
                conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
            )
        if pending == 0:
            break
        time.sleep(0.2)
    return pending


def directive(namespace: str, name: str, token: str, endpoint_id: str) -> dict[str, Any]:
    """A v3 directive as the Lambda relay forwards it."""
    return {
        "directive": {
            "header": {
                "namespace": namespace,
                "name": name,
                "payloadVersion": "3",
                "messageId": "1bd5d003-31b9-476f-ad03-71d471922820",
                "correlationToken": CORRELATION,
            },
            "endpoint": {
                "scope": {"type": "BearerToken", "token": token},
                "endpointId": endpoint_id,
                "cookie": {},
            },
            "payload": {},
        }
    }


def post_directive(port: int, body: dict[str, Any]) -> dict[str, Any]:
    """One directive through the endpoint, as the relay sends it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/alexa/smart_home",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", SECRET_HEADER: RELAY_SECRET},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def lua_string(value: str) -> str:
    """A Lua long-bracket string literal."""
    return "[==[" + value + "]==]"


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    """Run the Alexa benches and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds of each wrk run")
    parser.add_argument(
        "--rounds", type=int, default=5, help="runs of each load bench, each between baselines"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--transitions", type=int, default=500)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    opts = {"duration": args.duration, "connections": args.connections}

    gateway = Gateway()
    gateway.start()
    latencies: list[float] = []
    try:
        with BaselineServer() as base, tempfile.TemporaryDirectory() as tmp:
            base_get = base.get(**opts)
            data_dir = Path(tmp) / "data"
            data_dir.mkdir(mode=0o700)
            (data_dir / "config.yaml").write_text(
                json.dumps(
                    {
                        "alexa": {
                            "relay_secret": RELAY_SECRET,
                            "messaging_client_id": "amzn1.application-oa2-client.bench",
                            "messaging_client_secret": "bench-secret",
                            "lwa_token_url": f"http://127.0.0.1:{gateway.port}/auth/o2/token",
                            "event_gateway_url": f"http://127.0.0.1:{gateway.port}/v3/events",
                        }
                    }
                )
            )
            cli(data_dir, "user", "create", "--email", "bench@example.com")
            key = oauth_token(
                data_dir, "bench@example.com", client_id="alexa-bench", scopes=("devices",)
            )
            proc, port, _ = start_staterelay(data_dir, args.durability)
            try:
                wait_ready(f"http://127.0.0.1:{port}/readyz")
                grant = {
                    "directive": {
                        "header": {
                            "namespace": "Alexa.Authorization",
                            "name": "AcceptGrant",
                            "payloadVersion": "3",
                            "messageId": "1bd5d003-31b9-476f-ad03-71d471922820",
                        },
                        "payload": {
                            "grant": {"type": "OAuth2.AuthorizationCode", "code": "bench"},
                            "grantee": {"type": "BearerToken", "token": key},
                        },
                    }
                }
                answer = post_directive(port, grant)
                assert answer["event"]["header"]["name"] == "AcceptGrant.Response", answer
                device = api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "B"})
                device_id = str(device["id"])
                headers = {"Content-Type": "application/json", SECRET_HEADER: RELAY_SECRET}
                turn_on = json.dumps(directive("Alexa.PowerController", "TurnOn", key, device_id))
                turn_off = json.dumps(directive("Alexa.PowerController", "TurnOff", key, device_id))
                toggles = DIRECTIVES_LUA.replace("TURN_ON", lua_string(turn_on)).replace(
                    "TURN_OFF", lua_string(turn_off)
                )
                report = json.dumps(directive("Alexa", "ReportState", key, device_id))
                reports = (
                    "request = function() return wrk.format('POST', wrk.path, wrk.headers, "
                    + lua_string(report)
                    + ") end"
                )
                url = f"http://127.0.0.1:{port}/alexa/smart_home"

                def directives_run() -> Result:
                    result = run_wrk(
                        "TurnOn/TurnOff directives", url, headers=headers, script=toggles, **opts
                    )
                    # The ChangeReports they queued go out before anything else is measured.
                    drain(data_dir / "staterelay.db")
                    gateway.quiet()
                    return result

                def report_state_run() -> Result:
                    result = run_wrk("ReportState", url, headers=headers, script=reports, **opts)
                    gateway.quiet()
                    return result

                time.sleep(1.0)
                base_runs, (directives, report_state) = bracketed(
                    base,
                    [("directives", directives_run), ("ReportState", report_state_run)],
                    rounds=args.rounds,
                    **opts,
                )
                final = api(port, "GET", f"/api/v1/devices/{device_id}", key)
                power = str(final["state"]["power"])  # type: ignore[index]
                for _ in range(args.changes):
                    power = "OFF" if power == "ON" else "ON"
                    started = time.monotonic()
                    api(port, "PUT", f"/api/v1/devices/{device_id}/state", key, {"power": power})
                    latencies.append((gateway.take(device_id, power) - started) * 1000.0)
                version = final["version"]
                faulty = transitions_under_failures(gateway, port, key, args.transitions)
            finally:
                stop(proc)
    finally:
        gateway.stop()

    base_rates = [run.rps for run in base_runs]
    print()
    print(
        f"StateRelay Alexa bench: {args.connections} connections, {args.duration}s each run, "
        f"{args.rounds} rounds, durability={args.durability}, {os.cpu_count()} cores"
        " (shared machine: numbers are noisy)"
    )
    print(
        "Each StateRelay run sits between two baseline POST runs and is compared with their mean;"
        " a row shows its median run, its worst p99 and the median ratio (min-max)."
    )
    print(
        f"{'bench':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs baseline':>16}"
    )
    print(
        f"{'baseline POST json':32} {statistics.median(base_rates):10.0f} {'':>8} {'':>8} "
        f"{sum(run.errors for run in base_runs):7d} "
        f"{f'{min(base_rates):.0f}-{max(base_rates):.0f}/s':>16}"
    )
    print(
        f"{base_get.name:32} {base_get.rps:10.0f} {base_get.p50_ms:8.2f} {base_get.p99_ms:8.2f} "
        f"{base_get.errors:7d} {'':>16}"
    )
    for bench in (directives, report_state):
        middle = bench.median_run()
        ratios = bench.ratios()
        spread = f"{100 * bench.ratio():.0f}% ({100 * min(ratios):.0f}-{100 * max(ratios):.0f})"
        print(
            f"{middle.name:32} {middle.rps:10.0f} {middle.p50_ms:8.2f} "
            f"{bench.worst_p99_ms():8.2f} {sum(run.errors for run in bench.runs):7d} "
            f"{spread:>16}"
        )
    print(
        f"{'API change -> ChangeReport':32} {len(latencies):>10} "
        f"{statistics.median(latencies):8.2f} {percentile(latencies, 0.99):8.2f} "
        f"{0:7d} {'(count, ms)':>16}"
    )
    ordered, flaky = faulty
    print(
        f"{'transitions, 20% gateway 503s':32} {len(flaky):>10} "
        f"{statistics.median(flaky):8.2f} {percentile(flaky, 0.99):8.2f} "
        f"{gateway.failed:7d} {'(count, ms)':>16}"
    )
    print("rounds (req/s, and the ratio to the baseline runs around each):")
    print("  baseline POST: " + ", ".join(f"{rate:.0f}" for rate in base_rates))
    for bench in (directives, report_state):
        print(
            f"  {bench.name}: "
            + ", ".join(
                f"{run.rps:.0f} ({100 * r:.1f}%)"
                for run, r in zip(bench.runs, bench.ratios(), strict=True)
            )
        )
    print(f"device version after the directive bench: {version} (each toggle a committed change)")
    print(
        f"transitions under failures: {len(flaky)} of {args.transitions} accepted, in order per"
        f" sensor: {'yes' if ordered else 'NO'}; {gateway.failed} reports answered 503"
    )
    targets = (
        ("directives >= 25% of baseline", directives.ratio() >= 0.25),
        ("directives p99 < 25 ms", directives.worst_p99_ms() < 25.0),
        ("ReportState >= 50% of baseline", report_state.ratio() >= 0.5),
        ("change -> ChangeReport p99 < 100 ms", percentile(latencies, 0.99) < 100.0),
        ("every transition arrives, in order, through 20% failures", ordered),
    )
    for name, met in targets:
        print(f"  {'met ' if met else 'MISSED'} {name}")


SENSORS = 10
PACE = 0.02  # seconds between changes: each sensor changes every SENSORS * PACE seconds


def transitions_under_failures(
    gateway: Gateway, port: int, key: str, count: int
) -> tuple[bool, list[float]]:
    """``count`` contact-sensor transitions, round robin over ten sensors, while the gateway
    answers a fifth of the reports 503: (every sensor's transitions arrived exactly once and
    in order, the milliseconds from each change to its accepted report)."""
    sensors = [
        str(
            api(port, "POST", "/api/v1/devices", key, {"type": "contact_sensor", "name": f"D{n}"})[
                "id"
            ]
        )
        for n in range(SENSORS)
    ]
    gateway.quiet()
    gateway.fail_rate = 0.2
    expected: dict[str, list[tuple[str, float]]] = {sensor: [] for sensor in sensors}
    value = {sensor: "NOT_DETECTED" for sensor in sensors}
    start = time.monotonic()
    for n in range(count):
        sensor = sensors[n % SENSORS]
        value[sensor] = "DETECTED" if value[sensor] == "NOT_DETECTED" else "NOT_DETECTED"
        changed = time.monotonic()
        api(port, "PUT", f"/api/v1/devices/{sensor}/state", key, {"detection": value[sensor]})
        expected[sensor].append((value[sensor], changed))
        time.sleep(max(0.0, start + (n + 1) * PACE - time.monotonic()))
    # Retries back off (about 1, 5, 14, 40 and 120 s after the first to fifth failure in a
    # row), and a key's later transitions wait behind its head: at a 20% failure rate, one
    # run in several has a row that fails five times running and arrives ~3 minutes late.
    gateway.wait_detections(count, timeout=300.0)
    gateway.fail_rate = 0.0
    ordered = True
    latencies: list[float] = []
    for sensor in sensors:
        got = gateway.detections.get(sensor, [])
        ordered &= [v for v, _ in got] == [v for v, _ in expected[sensor]]
        latencies.extend(
            (arrived - changed) * 1000.0
            for (_, arrived), (_, changed) in zip(got, expected[sensor], strict=False)
        )
    return ordered, latencies


if __name__ == "__main__":
    main()
