"""IFTTT benches: trigger polls with 1,000 and 100,000 stored events, and change -> Realtime.

Usage: ``python bench/ifttt.py [--duration 10] [--connections 4] [--events 100000]
[--samples 40]``. Needs ``wrk`` on PATH. Everything runs on 127.0.0.1: StateRelay in a
subprocess, and a recording stand-in for IFTTT's Realtime API in a thread of this process.

1. One switch is toggled 1,000 times; wrk polls its ``power_changed`` timeline (a POST with
   a Lua body, 50 events per answer).
2. The switch is toggled until it has ``--events`` events (through the real API, so every
   event went through the change transaction and its fan-out); the same poll runs again.
   Equal latencies show that a poll reads one index range, not the table.
3. ``--samples`` single changes, at random moments, each timed from just before the PUT to
   the Realtime request naming the poll's trigger identity (including the debounce window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
from linking import oauth_token
from run import Result, api, cli, free_port, run_wrk, start_staterelay, stop

SERVICE_KEY = "bench-service-key-0123456789abcdef"
IDENTITY = "bench-identity"

POLL_LUA = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


class Realtime:
    """IFTTT's Realtime API, recorded: arrival time and identities of every POST."""

    def __init__(self) -> None:
        self.received: list[tuple[float, list[str]]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                names = [e.get("trigger_identity", "") for e in body.get("data", [])]
                with recorder.lock:
                    recorder.received.append((time.monotonic(), names))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where ``ifttt.realtime_url`` points."""
        return f"http://127.0.0.1:{self.port}/v1/notifications"

    def first_after(self, moment: float, timeout: float = 10.0) -> float:
        """When the first notification naming the identity arrived after ``moment``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, names in self.received:
                    if at > moment and IDENTITY in names:
                        return at
            time.sleep(0.001)
        raise RuntimeError("no Realtime notification within the timeout")

    def count(self) -> int:
        """Requests so far."""
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def toggle(port: int, key: str, device_id: str, total: int, connections: int) -> float:
    """PUT the switch's power ``total`` times through the API, ``connections`` at a time."""

    async def run() -> None:
        url = f"http://127.0.0.1:{port}/api/v1/devices/{device_id}/state"
        headers = {"Authorization": f"Bearer {key}"}
        left = iter(range(total))
        async with aiohttp.ClientSession(headers=headers) as session:

            async def worker() -> None:
                for n in left:
                    body = {"power": "OFF" if n % 2 else "ON"}
                    async with session.put(url, json=body) as response:
                        if response.status != 200:
                            raise RuntimeError(f"PUT state answered {response.status}")

            await asyncio.gather(*(worker() for _ in range(connections)))

    started = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - started


def toggle_until(
    port: int, key: str, device_id: str, database: Path, target: int, connections: int
) -> float:
    """Toggle until the timeline holds ``target`` events (concurrent PUTs can repeat a value,
    and a repeated value is no change); returns the seconds it took."""
    seconds = 0.0
    while (missing := target - events(database, device_id)) > 0:
        seconds += toggle(port, key, device_id, missing, connections)
    return seconds


def events(database: Path, device_id: str) -> int:
    """Events stored on the switch's timeline (read-only, beside the running server)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ifttt_events WHERE device_id = ? AND kind = 'power'",
            (device_id,),
        ).fetchone()
    return int(row[0])


def query_plan(database: Path) -> str:
    """SQLite's plan for the poll query."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM ifttt_events WHERE tenant_id = ? AND device_id = ?"
            " AND kind = ? AND variant = ? ORDER BY id DESC LIMIT ?",
            ("t", "d", "power", "", 50),
        ).fetchall()
    return "; ".join(str(row[3]) for row in rows)


def poll(port: int, key: str, device_id: str, name: str, opts: dict[str, int]) -> Result:
    """wrk POSTs of the power_changed trigger check."""
    body = json.dumps(
        {
            "triggerFields": {"device": device_id},
            "trigger_identity": IDENTITY,
            "limit": 50,
            "user": {"timezone": "Europe/Berlin"},
            "ifttt_source": {"id": "1", "url": "https://ifttt.com/applets/1"},
        }
    )
    return run_wrk(
        name,
        f"http://127.0.0.1:{port}/ifttt/v1/triggers/power_changed",
        headers={"Authorization": f"Bearer {key}"},
        script=POLL_LUA.format(body=body),
        **opts,
    )


def realtime_latency(
    port: int, key: str, device_id: str, realtime: Realtime, samples: int
) -> list[float]:
    """Seconds from a change to IFTTT hearing of it, ``samples`` times."""
    found: list[float] = []
    for _ in range(samples):
        time.sleep(random.uniform(0.05, 0.6))
        current = api(port, "GET", f"/api/v1/devices/{device_id}", key)["state"]
        flipped = "OFF" if isinstance(current, dict) and current.get("power") == "ON" else "ON"
        started = time.monotonic()
        api(port, "PUT", f"/api/v1/devices/{device_id}/state", key, {"power": flipped})
        found.append(realtime.first_after(started) - started)
    return found


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    """Run the IFTTT benches and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    opts = {"duration": args.duration, "connections": args.connections}
    realtime = Realtime()
    os.environ["STATERELAY_IFTTT_SERVICE_KEY"] = SERVICE_KEY
    os.environ["STATERELAY_IFTTT_REALTIME_URL"] = realtime.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            database = data_dir / "staterelay.db"
            cli(data_dir, "user", "create", "--email", "bench@example.com")
            key = cli(
                data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write"
            )
            app_token = oauth_token(
                data_dir, "bench@example.com", client_id="ifttt-bench", scopes=("ifttt",)
            )
            proc, port, _ = start_staterelay(data_dir, args.durability)
            try:
                device = api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "B"})
                device_id = str(device["id"])
                toggle_until(port, key, device_id, database, 1000, args.connections)
                small_events = events(database, device_id)
                small = poll(port, app_token, device_id, f"poll, {small_events:,} events", opts)
                before = realtime.count()
                seeded = args.events - small_events
                seconds = toggle_until(
                    port, key, device_id, database, args.events, args.connections
                )
                big_events = events(database, device_id)
                time.sleep(2.0)  # the last window's notification
                seeding_requests = realtime.count() - before
                big = poll(port, app_token, device_id, f"poll, {big_events:,} events", opts)
                latencies = realtime_latency(port, key, device_id, realtime, args.samples)
                plan = query_plan(database)
            finally:
                stop(proc)
    finally:
        realtime.close()

    print()
    print(
        f"StateRelay IFTTT bench: {args.connections} connections, {args.duration}s per poll run,"
        f" durability={args.durability}, {os.cpu_count()} cores (a shared machine: noisy)"
    )
    print(f"{'bench':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for result in (small, big):
        print(
            f"{result.name:34} {result.rps:9.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f}"
            f" {result.errors:7d}"
        )
    print(
        f"{'poll latency, more events / fewer':34} p50 {big.p50_ms / small.p50_ms:.2f}x,"
        f" p99 {big.p99_ms / small.p99_ms:.2f}x"
    )
    print(
        f"{'change -> Realtime (s)':34} p50 {statistics.median(latencies):.3f}"
        f"  p99 {percentile(latencies, 0.99):.3f}  max {max(latencies):.3f}"
        f"  (n={len(latencies)}, debounce 1.0 s, target p99 < 1.5 s)"
    )
    print(
        f"{'seeding':34} {seeded:,} changes in {seconds:.1f} s ({seeded / seconds:.0f}/s);"
        f" Realtime requests meanwhile: {seeding_requests} (coalesced per window)"
    )
    print(f"{'poll query plan':34} {plan}")


if __name__ == "__main__":
    main()
