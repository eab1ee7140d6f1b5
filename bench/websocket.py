"""Live-update latency: from an API state change to the WebSocket message at open dashboards.

Usage: ``python bench/websocket.py [--changes 1000] [--clients 10] [--durability full]``.
Starts ``staterelay serve`` on a fresh data directory, opens ``--clients`` live feeds of one
household (bearer token, as a script would), then makes ``--changes`` sequential state
changes through the REST API and times each until every feed has its message. Everything
runs on 127.0.0.1 and is bounded in count. Target: p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import api, cli, start_staterelay, stop  # bench/ is not a package

TARGET_P99_MS = 50.0
MESSAGE_TIMEOUT = 5.0


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


async def feed_reader(
    ws: aiohttp.ClientWebSocketResponse, arrivals: asyncio.Queue[tuple[int, float]]
) -> None:
    """Put (device version, arrival time) of every state message on ``arrivals``."""
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        data = json.loads(message.data)
        if data.get("type") == "device.state":
            arrivals.put_nowait((int(data["device"]["version"]), time.perf_counter()))


async def measure(
    port: int, key: str, device_id: str, changes: int, clients: int
) -> tuple[list[float], list[float]]:
    """Latencies (ms) from sending the PUT, and from its answer, to each feed's message."""
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    from_request: list[float] = []
    from_answer: list[float] = []
    async with aiohttp.ClientSession() as http:
        feeds = []
        for _ in range(clients):
            ws = await http.ws_connect(f"{base}/dashboard/ws", headers=auth)
            hello = await ws.receive_json(timeout=MESSAGE_TIMEOUT)
            assert hello["type"] == "hello", hello
            queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
            feeds.append((ws, queue, asyncio.create_task(feed_reader(ws, queue))))
        url = f"{base}/api/v1/devices/{device_id}/state"
        for n in range(changes):
            body = {"power": "ON" if n % 2 == 0 else "OFF"}
            sent = time.perf_counter()
            async with http.put(url, json=body, headers=auth) as response:
                answer = await response.json()
                answered = time.perf_counter()
            version = int(answer["version"])
            for _, queue, _ in feeds:
                while True:
                    seen, arrived = await asyncio.wait_for(queue.get(), MESSAGE_TIMEOUT)
                    if seen == version:
                        break
                from_request.append((arrived - sent) * 1000)
                from_answer.append((arrived - answered) * 1000)
        for ws, _, reader in feeds:
            await ws.close()
            reader.cancel()
    return from_request, from_answer


def main() -> None:
    """Start, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        cli(data_dir, "user", "create", "--email", "bench@example.com")
        key = cli(data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write")
        proc, port, _ = start_staterelay(data_dir, args.durability)
        try:
            device = api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "Bench"})
            from_request, from_answer = asyncio.run(
                measure(port, key, str(device["id"]), args.changes, args.clients)
            )
        finally:
            stop(proc)
    p50, p99 = percentile(from_request, 50), percentile(from_request, 99)
    print()
    print(
        f"WebSocket bench: {args.changes} API changes, {args.clients} open feeds, "
        f"durability={args.durability}, {os.cpu_count()} cores"
    )
    print(f"{'measure':40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{'PUT sent -> message at each feed':40} {p50:8.2f} {p99:8.2f} {max(from_request):8.2f}")
    print(
        f"{'PUT answered -> message at each feed':40} {percentile(from_answer, 50):8.2f} "
        f"{percentile(from_answer, 99):8.2f} {max(from_answer):8.2f}"
    )
    print(f"mean {statistics.fmean(from_request):.2f} ms over {len(from_request)} messages")
    print(f"target p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
