"""``staterelay doctor``'s checks of the bridge: the URL, and whether the broker answers."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from staterelay.ops.checks import Check
from staterelay.settings import Settings

CONNECT_TIMEOUT: Final = 3.0


def mqtt_checks(settings: Settings) -> Sequence[Check]:
    """Nothing while off; else whether the broker's port accepts a connection."""
    mqtt = settings.mqtt
    if mqtt.url is None:
        return ()
    url = urlsplit(mqtt.url)
    host = url.hostname or ""
    port = url.port or (8883 if url.scheme == "mqtts" else 1883)
    checks = []
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        checks.append(
            Check(
                "mqtt broker",
                "FAIL",
                f"cannot reach {host}:{port}: {exc.strerror or exc}",
                "start the broker, or correct mqtt.url",
            )
        )
    else:
        checks.append(Check("mqtt broker", "OK", f"{host}:{port} accepts connections"))
    if mqtt.household:
        checks.append(Check("mqtt household", "OK", f"serves the household of {mqtt.household}"))
    return checks
