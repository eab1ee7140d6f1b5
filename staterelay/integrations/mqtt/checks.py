"""``staterelay doctor``'s checks of the bridge: the URL, and whether the broker answers."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path
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
    household = _household(settings)
    if household is not None:
        checks.append(household)
    return checks


def _household(settings: Settings) -> Check | None:
    """Whether the household can be told, read from the SQLite file (read-only); None on
    PostgreSQL, where the server reports it at start and on the card."""
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        return None
    email = settings.mqtt.household
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            if email:
                found = conn.execute(
                    "SELECT 1 FROM users WHERE email_key = ?", (email.strip().casefold(),)
                ).fetchone()
                tenants = 1 if found else 0
            else:
                tenants = int(
                    conn.execute("SELECT count(DISTINCT tenant_id) FROM users").fetchone()[0]
                )
    except sqlite3.Error as exc:
        return Check("mqtt household", "WARN", f"cannot read the users: {exc}")
    if email:
        if tenants:
            return Check("mqtt household", "OK", f"serves the household of {email}")
        return Check(
            "mqtt household",
            "FAIL",
            f"no user has the email {email} (mqtt.household)",
            "set mqtt.household to the email of a user of the household to serve",
        )
    if tenants > 1:
        return Check(
            "mqtt household",
            "FAIL",
            f"{tenants} households and mqtt.household is not set",
            "set mqtt.household to the email of a user of the household to serve",
        )
    if tenants == 0:
        return Check("mqtt household", "WARN", "no household yet; the bridge starts with the first")
    return Check("mqtt household", "OK", "serves the only household")
