"""A real Home Assistant against ``staterelay serve`` and its MQTT bridge (run by hand).

Needs Mosquitto and Home Assistant in a venv of its own (it pins its own aiohttp):

    python3 -m venv /tmp/ha && /tmp/ha/bin/pip install homeassistant==2024.3.3 \\
        paho-mqtt==1.6.1 Pillow==10.2.0 home-assistant-frontend==20240307.0 janus==1.0.0 \\
        psutil-home-assistant==0.0.1 securetar==2024.2.1 SQLAlchemy==2.0.27 \\
        fnv-hash-fast==0.5.0
    .venv/bin/python -m tests.mqtt.ha_smoke /tmp/ha/bin/hass

It starts a broker, StateRelay with five devices and Home Assistant with the MQTT
integration configured for the broker and a few automations, then prints what each side
saw: the entities Home Assistant discovered (type, area), a ``switch.turn_on`` and a
``light.turn_on`` at 40 % reaching StateRelay through ``set`` topics (source ``mqtt``),
and a press starting an automation on the button's event entity.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[2]
DEVICES = (
    ("switch", "Lamp"),
    ("dimmer", "Desk"),
    ("button", "Bell"),
    ("contact_sensor", "Door"),
    ("temperature_sensor", "Porch"),
)
REPORT = (
    "{{ states('switch.lamp') }},{{ state_attr('light.desk', 'brightness') }},"
    "{{ states('binary_sensor.door') }},{{ states('sensor.porch') }},"
    "{{ state_attr('sensor.porch', 'unit_of_measurement') }},{{ area_name('switch.lamp') }}"
)


def say(label: str, value: object) -> None:
    """One line of the run's report."""
    sys.stdout.write(f"{label} {value}\n")
    sys.stdout.flush()


def free_port() -> int:
    """A TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(port: int, seconds: float = 30.0) -> None:
    """Until something accepts connections on ``port``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port}")


def api(port: int, key: str, method: str, path: str, body: object = None) -> Any:
    """One call of StateRelay's API."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"{}")


def ha_config(directory: Path, http_port: int, broker: int) -> None:
    """Home Assistant's configuration: the MQTT entry and the automations of the smoke run."""
    (directory / ".storage").mkdir(parents=True)
    automations = [
        {
            "alias": "lamp on",
            "trigger": {"platform": "mqtt", "topic": "smoke/on"},
            "action": {"service": "switch.turn_on", "target": {"entity_id": "switch.lamp"}},
        },
        {
            "alias": "desk dim",
            "trigger": {"platform": "mqtt", "topic": "smoke/dim"},
            "action": {
                "service": "light.turn_on",
                "target": {"entity_id": "light.desk"},
                "data": {"brightness_pct": 40},
            },
        },
        {
            "alias": "bell pressed",
            "trigger": {
                "platform": "state",
                "entity_id": "event.bell",
                "not_from": ["unavailable"],
                "not_to": ["unavailable", "unknown"],
            },
            "action": {
                "service": "mqtt.publish",
                "data": {
                    "topic": "smoke/pressed",
                    "payload": "{{ trigger.to_state.attributes.event_type }}",
                },
            },
        },
        {
            "alias": "report",
            "trigger": {"platform": "mqtt", "topic": "smoke/report"},
            "action": {
                "service": "mqtt.publish",
                "data": {"topic": "smoke/states", "payload": REPORT},
            },
        },
    ]
    configuration = {
        "homeassistant": {
            "name": "Smoke",
            "time_zone": "UTC",
            "unit_system": "metric",
            "latitude": 0,
            "longitude": 0,
            "elevation": 0,
        },
        "http": {"server_port": http_port},
        "automation": automations,
    }
    # JSON is YAML: Home Assistant reads it as its configuration.yaml.
    (directory / "configuration.yaml").write_text(json.dumps(configuration), encoding="utf-8")
    entry = {
        "entry_id": "01mqtt",
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "broker",
        "data": {"broker": "127.0.0.1", "port": broker, "discovery": True},
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    entries = {
        "version": 1,
        "minor_version": 2,
        "key": "core.config_entries",
        "data": {"entries": [entry]},
    }
    (directory / ".storage/core.config_entries").write_text(json.dumps(entries), encoding="utf-8")


async def exercise(broker: int, port: int, key: str, ids: dict[str, str]) -> None:
    """Drive Home Assistant through MQTT-triggered automations; print what each side saw."""
    async with aiomqtt.Client("127.0.0.1", broker) as client:
        await client.subscribe("smoke/#")
        await client.subscribe("homeassistant/status")
        arrived: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                arrived.put_nowait((message.topic.value, payload.decode()))

        reader = asyncio.create_task(read())

        async def expect(topic: str, seconds: float = 120.0) -> str:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    got, payload = await asyncio.wait_for(arrived.get(), 1.0)
                except TimeoutError:
                    continue
                if got == topic:
                    return payload
            sys.exit(f"nothing on {topic}")

        def state(name: str) -> Any:
            return api(port, key, "GET", f"/api/v1/devices/{ids[name]}/state")["state"]

        async def until(name: str, prop: str, value: object) -> Any:
            for _ in range(50):
                if state(name).get(prop) == value:
                    break
                await asyncio.sleep(0.2)
            return state(name)

        say("Home Assistant's birth message:", await expect("homeassistant/status"))
        await asyncio.sleep(8)  # discovery settles
        await client.publish("smoke/report", "x")
        say("HA sees lamp, desk brightness, door, porch, unit, area:", await expect("smoke/states"))
        await client.publish("smoke/on", "x")
        say("StateRelay's lamp after switch.turn_on:", await until("Lamp", "power", "ON"))
        await client.publish("smoke/dim", "x")
        say("StateRelay's desk after light.turn_on 40 %:", await until("Desk", "brightness", 40))
        activity = api(port, key, "GET", f"/api/v1/activity?device_id={ids['Lamp']}")["items"]
        say(
            "sources of the lamp's changes:",
            sorted({a["source"] for a in activity if a["kind"] == "state"}),
        )
        api(port, key, "PUT", f"/api/v1/devices/{ids['Door']}/state", {"detection": "DETECTED"})
        api(port, key, "POST", f"/api/v1/devices/{ids['Bell']}/press")
        say("the bell's automation published:", await expect("smoke/pressed", 30))
        await asyncio.sleep(1)
        await client.publish("smoke/report", "x")
        say("HA sees afterwards:", await expect("smoke/states"))
        reader.cancel()


def main() -> None:
    """Start the three, exercise them, print, stop."""
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    hass = sys.argv[1]
    root = Path(tempfile.mkdtemp(prefix="staterelay-ha-smoke-"))
    root.chmod(0o755)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        broker = free_port()
        config = root / "mosquitto.conf"
        config.write_text(
            f"listener {broker} 127.0.0.1\nallow_anonymous true\npersistence false\n",
            encoding="utf-8",
        )
        processes.append(
            subprocess.Popen(["mosquitto", "-c", str(config)], stderr=subprocess.DEVNULL)
        )
        wait_port(broker)
        data = root / "data"

        def cli(*args: str) -> str:
            command = [sys.executable, "-m", "staterelay", *args, "--data-dir", str(data)]
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            return done.stdout.strip()

        cli("user", "create", "--email", "smoke@example.com")
        key = cli("apikey", "create", "--email", "smoke@example.com", "--scope", "write")
        port = free_port()
        env = {
            **os.environ,
            "STATERELAY_MQTT_URL": f"mqtt://127.0.0.1:{broker}",
            "STATERELAY_LOG_LEVEL": "warning",
        }
        serve = [sys.executable, "-m", "staterelay", "serve", "--port", str(port)]
        processes.append(subprocess.Popen([*serve, "--data-dir", str(data)], env=env, cwd=ROOT))
        wait_port(port)
        ids = {
            name: api(
                port, key, "POST", "/api/v1/devices", {"type": kind, "name": name, "room": "Office"}
            )["id"]
            for kind, name in DEVICES
        }
        ha = root / "ha"
        ha_config(ha, free_port(), broker)
        log = (root / "hass.log").open("wb")
        processes.append(
            subprocess.Popen([hass, "-c", str(ha), "--skip-pip"], stdout=log, stderr=log)
        )
        asyncio.run(exercise(broker, port, key, ids))
        time.sleep(12)  # Home Assistant writes its registries about 10 s after a change
        registry = json.loads((ha / ".storage/core.entity_registry").read_text(encoding="utf-8"))
        entities = [e["entity_id"] for e in registry["data"]["entities"] if e["platform"] == "mqtt"]
        say("Home Assistant's MQTT entities:", sorted(entities))
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        say("files and hass.log in", root)


if __name__ == "__main__":
    main()
