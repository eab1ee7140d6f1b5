"""MQTT bridge benchmarks through ``staterelay serve`` and a Mosquitto of its own.

Two figures, each over ``--changes`` changes of one switch, one at a time:

- API change -> MQTT message: from sending ``PUT /api/v1/devices/{id}/state`` until a
  subscriber has the new state on ``staterelay/<id>/state``;
- MQTT command -> committed change -> state message: from publishing ``ON``/``OFF`` on
  ``staterelay/<id>/set/power`` (as Home Assistant does) until the state message with the
  new value arrives (the bridge publishes it only after the change committed).

Usage: ``python bench/mqtt.py [--changes 1000] [--durability full]``. Needs Mosquitto
(``/usr/sbin/mosquitto``); everything runs on 127.0.0.1 and is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import api, cli, free_port, start_staterelay, stop  # bench/ is not a package

TARGET_P99_MS = 50.0


def start_mosquitto(directory: Path, *, nodelay: bool) -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto on a free loopback port, no persistence (``set_tcp_nodelay`` on request)."""
    extra = "set_tcp_nodelay true\n" if nodelay else ""
    binary = "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "mosquitto"
    if shutil.which(binary) is None:
        sys.exit("mosquitto is not installed (Debian: apt-get install mosquitto)")
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}",
        encoding="utf-8",
    )
    directory.chmod(0o755)
    config.chmod(0o644)
    proc = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("mosquitto did not start")


def start_bridged(
    data_dir: Path, durability: str, broker: int
) -> tuple[subprocess.Popen[bytes], int]:
    """``staterelay serve`` with the bridge on the broker."""
    proc, port, _ = start_staterelay(
        data_dir, durability, {"STATERELAY_MQTT_URL": f"mqtt://127.0.0.1:{broker}"}
    )
    return proc, port


def wait_connected(port: int, key: str, timeout: float = 20.0) -> None:
    """Until ``/api/v1/integrations/mqtt`` says the bridge is connected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if api(port, "GET", "/api/v1/integrations/mqtt", key).get("connected"):
                return
        except urllib.error.URLError:
            pass
        time.sleep(0.1)
    sys.exit("the bridge did not connect")


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


async def measure(
    port: int, broker: int, key: str, device_id: str, changes: int, qos: int
) -> tuple[list[float], list[float]]:
    """Milliseconds per change: API -> state message, and command -> state message."""
    state_topic = f"staterelay/{device_id}/state"
    arrived: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    headers = {"Authorization": f"Bearer {key}"}
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    async with (
        aiomqtt.Client("127.0.0.1", broker, socket_options=nodelay) as mqtt,
        aiohttp.ClientSession() as http,
    ):
        await mqtt.subscribe(state_topic, qos=1)

        async def read() -> None:
            async for message in mqtt.messages:
                if isinstance(message.payload, bytes) and message.payload:
                    arrived.put_nowait(json.loads(message.payload))

        reader = asyncio.create_task(read())
        await asyncio.wait_for(arrived.get(), 5)  # the retained state

        async def until(power: str) -> None:
            while True:
                state = await asyncio.wait_for(arrived.get(), 5)
                if state["state"] == {"power": power}:  # type: ignore[comparison-overlap]
                    return

        from_api: list[float] = []
        from_command: list[float] = []
        power = "OFF"
        for _ in range(changes):
            power = "ON" if power == "OFF" else "OFF"
            started = time.perf_counter()
            async with http.put(
                f"http://127.0.0.1:{port}/api/v1/devices/{device_id}/state",
                json={"power": power},
                headers=headers,
            ) as response:
                assert response.status == 200, await response.text()
            await until(power)
            from_api.append((time.perf_counter() - started) * 1000)
        for _ in range(changes):
            power = "ON" if power == "OFF" else "OFF"
            started = time.perf_counter()
            await mqtt.publish(f"staterelay/{device_id}/set/power", power, qos=qos)
            await until(power)
            from_command.append((time.perf_counter() - started) * 1000)
        reader.cancel()
    return from_api, from_command


def main() -> None:
    """Start, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    parser.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="run Mosquitto with set_tcp_nodelay true (its default is false)",
    )
    parser.add_argument(
        "--command-qos",
        type=int,
        default=0,
        choices=[0, 1],
        help="QoS of the commands (0: what Home Assistant sends with StateRelay's discovery)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker_dir = Path(tmp) / "mosquitto"
        broker_dir.mkdir()
        mosquitto, broker = start_mosquitto(broker_dir, nodelay=args.broker_nodelay)
        data_dir = Path(tmp) / "data"
        try:
            cli(data_dir, "user", "create", "--email", "bench@example.com")
            key = cli(
                data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write"
            )
            proc, port = start_bridged(data_dir, args.durability, broker)
            try:
                wait_connected(port, key)
                device = api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "B"})
                from_api, from_command = asyncio.run(
                    measure(port, broker, key, str(device["id"]), args.changes, args.command_qos)
                )
            finally:
                stop(proc)
        finally:
            mosquitto.kill()
            mosquitto.wait()
    print()
    print(
        f"MQTT bench: {args.changes} changes each way, one switch, durability={args.durability},"
        f" broker set_tcp_nodelay={'true' if args.broker_nodelay else 'false (default)'},"
        f" commands at QoS {args.command_qos},"
        f" {os.cpu_count()} cores"
    )
    print(f"{'measure':46} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    for label, values in (
        ("API PUT sent -> state message at subscriber", from_api),
        ("MQTT command -> committed -> state message", from_command),
    ):
        p99 = percentile(values, 99)
        verdict = "ok" if p99 < TARGET_P99_MS else f"over the {TARGET_P99_MS:g} ms target"
        print(
            f"{label:46} {percentile(values, 50):8.2f} {p99:8.2f} {max(values):8.2f}"
            f" {statistics.fmean(values):8.2f}  {verdict}"
        )


if __name__ == "__main__":
    main()
