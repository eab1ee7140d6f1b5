"""Check the discovery configs against a real Home Assistant's schemas (run by hand).

Home Assistant pins its own aiohttp and paho-mqtt, so it lives in a venv of its own:

    python3 -m venv /tmp/ha && /tmp/ha/bin/pip install homeassistant==2024.3.3 paho-mqtt==1.6.1
    .venv/bin/python -m tests.mqtt.ha_schemas dump > /tmp/configs.json
    /tmp/ha/bin/python tests/mqtt/ha_schemas.py check /tmp/configs.json

``dump`` prints every config the bridge publishes for one device of each type; ``check``
validates each with the platform's ``DISCOVERY_SCHEMA`` (``TRIGGER_DISCOVERY_SCHEMA`` for
the device trigger), as Home Assistant's discovery does, and fails on the first refusal.
2024.3.3 is the newest release that runs on Python 3.11.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any


def dump() -> None:
    """Print the configs of one device of each type as JSON (the project's venv)."""
    from staterelay.core.records import Device
    from staterelay.integrations.mqtt.discovery import configs
    from staterelay.integrations.mqtt.topics import Topics

    topics = Topics("staterelay", "homeassistant")
    found: list[dict[str, Any]] = []
    kinds = (
        ("switch", {}),
        ("dimmer", {}),
        ("contact_sensor", {}),
        ("motion_sensor", {}),
        ("temperature_sensor", {"scale": "FAHRENHEIT"}),
        ("button", {}),
    )
    for kind, options in kinds:
        device = Device(
            seq=1,
            id=f"dev_{kind}",
            tenant_id="ten_check",
            type=kind,
            name=f"My {kind}",
            description="",
            options=options,
            properties={},
            version=1,
            created_at=time.time(),
            updated_at=time.time(),
            room="Kitchen",
        )
        for config in configs(topics, device, "http://localhost:8080"):
            found.append({"topic": config.topic, "payload": config.payload})
    sys.stdout.write(json.dumps(found) + "\n")


def check(path: str) -> int:
    """Validate each config with Home Assistant's schema (Home Assistant's venv)."""
    failed = 0
    with open(path, encoding="utf-8") as file:
        items = json.load(file)
    for item in items:
        component = item["topic"].split("/")[1]
        if component == "device_automation":
            module = importlib.import_module("homeassistant.components.mqtt.device_trigger")
            schema = module.TRIGGER_DISCOVERY_SCHEMA
        else:
            module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
            schema = module.DISCOVERY_SCHEMA
        payload = {**item["payload"], "platform": "mqtt"}
        try:
            schema(payload)
        except Exception as exc:  # noqa: BLE001 - every refusal is reported
            failed += 1
            sys.stdout.write(f"FAIL {item['topic']}: {exc}\n")
        else:
            sys.stdout.write(f"OK   {item['topic']}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:
        dump()
    elif sys.argv[1:2] == ["check"] and len(sys.argv) == 3:
        sys.exit(check(sys.argv[2]))
    else:
        sys.exit(__doc__)
