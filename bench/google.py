"""Google Home benchmarks: EXECUTE (OnOff, each a committed change) and QUERY through
``staterelay serve``, and the time from an API state change to its Report State reaching a
loopback Home Graph.

Usage: ``python bench/google.py [--duration 10] [--connections 32] [--changes 1000]``.
Needs ``wrk`` on PATH. Google's token endpoint and Home Graph are an aiohttp server on
127.0.0.1 in this process (it checks nothing but answers like Google); the service account
key is made for the run. The bare-aiohttp baseline (``bench/baseline_app.py``) is measured
in the same run, and the targets are ratios of it: EXECUTE >= 25 %, QUERY >= 50 %, change
-> Report State p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alexa import (  # bench/ is not a package: beside this file
    DIRECTIVES_LUA,
    drain,
    lua_string,
    percentile,
)
from linking import oauth_token
from loopback import LoopbackApp
from run import (
    Result,
    api,
    cli,
    measure_baseline,
    ratio,
    run_wrk,
    start_staterelay,
    stop,
    wait_ready,
)

PROJECT = "bench-project"
TOGGLE_LUA = DIRECTIVES_LUA  # the same alternation of two request bodies


class HomeGraph(LoopbackApp):
    """Google's token endpoint and Home Graph on loopback, in a thread of this process."""

    what = "Report State"

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def add_routes(self, app: web.Application) -> None:
        """Its endpoints."""
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/devices:reportStateAndNotification", self._report)
        app.router.add_post("/v1/devices:requestSync", self._sync)

    async def _token(self, request: web.Request) -> web.Response:
        return web.json_response({"access_token": "ya29.bench", "expires_in": 3600})

    async def _sync(self, request: web.Request) -> web.Response:
        with self.condition:
            self.syncs += 1
        return web.json_response({})

    async def _report(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body = await request.json()
        states = body["payload"]["devices"].get("states", {})
        with self.condition:
            for device_id, state in states.items():
                self.reports += 1
                self.arrivals.setdefault((device_id, bool(state.get("on"))), arrived)
            self.condition.notify_all()
        return web.json_response({"requestId": body["requestId"]})


def write_key(path: Path, token_uri: str) -> None:
    """A service account key made for this run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "bench",
        "private_key": pem,
        "client_email": f"bench@{PROJECT}.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(account), encoding="utf-8")


def intent(port: int, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """One intent through the fulfillment, as Google sends it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/google/fulfillment",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def execute(device_id: str, on: bool) -> dict[str, Any]:
    """An EXECUTE OnOff request body."""
    command = {"command": "action.devices.commands.OnOff", "params": {"on": on}}
    return {
        "requestId": "6894439706274654512",
        "inputs": [
            {
                "intent": "action.devices.EXECUTE",
                "payload": {"commands": [{"devices": [{"id": device_id}], "execution": [command]}]},
            }
        ],
    }


def main() -> None:
    """Run the Google Home benches and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    opts = {"duration": args.duration, "connections": args.connections}

    baseline = measure_baseline(args.duration, args.connections)
    base_post = baseline.write

    graph = HomeGraph()
    graph.start()
    latencies: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            data_dir.mkdir(mode=0o700)
            write_key(data_dir / "google-key.json", f"http://127.0.0.1:{graph.port}/token")
            (data_dir / "config.yaml").write_text(
                json.dumps(
                    {
                        "google": {
                            "project_id": PROJECT,
                            "service_account_file": "google-key.json",
                            "homegraph_url": f"http://127.0.0.1:{graph.port}",
                        }
                    }
                )
            )
            cli(data_dir, "user", "create", "--email", "bench@example.com")
            sheet = cli(data_dir, "google", "setup")
            found = re.search(r"Client ID:\s+(\S+)", sheet)
            assert found, sheet
            token = oauth_token(
                data_dir, "bench@example.com", client_id=found.group(1), scopes=("devices",)
            )
            proc, port, _ = start_staterelay(data_dir, args.durability)
            try:
                wait_ready(f"http://127.0.0.1:{port}/readyz")
                sync = {"requestId": "1", "inputs": [{"intent": "action.devices.SYNC"}]}
                assert intent(port, token, sync)["payload"]["agentUserId"]
                device = api(
                    port, "POST", "/api/v1/devices", token, {"type": "switch", "name": "B"}
                )
                device_id = str(device["id"])
                url = f"http://127.0.0.1:{port}/google/fulfillment"
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                lua = TOGGLE_LUA.replace(
                    "TURN_ON", lua_string(json.dumps(execute(device_id, True)))
                ).replace("TURN_OFF", lua_string(json.dumps(execute(device_id, False))))
                time.sleep(1.0)
                executes = run_wrk("EXECUTE OnOff", url, headers=headers, script=lua, **opts)
                drain(data_dir / "staterelay.db")
                graph.quiet()
                query = {
                    "requestId": "2",
                    "inputs": [
                        {
                            "intent": "action.devices.QUERY",
                            "payload": {"devices": [{"id": device_id}]},
                        }
                    ],
                }
                queries = run_wrk(
                    "QUERY",
                    url,
                    headers=headers,
                    script=(
                        "request = function() return wrk.format('POST', wrk.path, wrk.headers, "
                        + lua_string(json.dumps(query))
                        + ") end"
                    ),
                    **opts,
                )
                final = api(port, "GET", f"/api/v1/devices/{device_id}", token)
                version = final["version"]
                power = str(final["state"]["power"])  # type: ignore[index]
                for _ in range(args.changes):
                    power = "OFF" if power == "ON" else "ON"
                    started = time.monotonic()
                    api(port, "PUT", f"/api/v1/devices/{device_id}/state", token, {"power": power})
                    latencies.append((graph.take(device_id, power == "ON") - started) * 1000.0)
            finally:
                stop(proc)
    finally:
        graph.stop()

    print()
    print(
        f"StateRelay Google Home bench: {args.connections} connections, {args.duration}s each, "
        f"durability={args.durability}, {os.cpu_count()} cores (shared machine: numbers are noisy)"
    )
    print(
        f"{'bench':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs baseline':>12}"
    )
    rows: list[Result] = [base_post, executes, queries]
    for result in rows:
        print(
            f"{result.name:32} {result.rps:10.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
            f"{result.errors:7d} {ratio(result.rps, base_post.rps):>12}"
        )
    print(
        f"{'API change -> Report State':32} {len(latencies):>10} "
        f"{statistics.median(latencies):8.2f} {percentile(latencies, 0.99):8.2f} "
        f"{0:7d} {'(count, ms)':>12}"
    )
    print(f"device version after the EXECUTE bench: {version} (each toggle a committed change)")
    targets = (
        ("EXECUTE OnOff >= 25% of baseline", executes.rps >= 0.25 * base_post.rps),
        ("QUERY >= 50% of baseline", queries.rps >= 0.5 * base_post.rps),
        ("change -> Report State p99 < 100 ms", percentile(latencies, 0.99) < 100.0),
    )
    for name, met in targets:
        print(f"  {'met ' if met else 'MISSED'} {name}")


if __name__ == "__main__":
    main()
