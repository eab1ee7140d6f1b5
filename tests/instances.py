"""Instances for tests of operations: a populated data directory, opened as the CLI does."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from staterelay.app.assemble import build_core
from staterelay.core import Core
from staterelay.core.crypto import load_or_create_secret
from staterelay.settings import Settings, WebhookSettings, load_settings
from tests.conftest import link_oauth_client, make_account


def instance_settings(data_dir: Path) -> Settings:
    """Settings of an instance in ``data_dir``, loopback webhooks allowed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    base = load_settings(data_dir=data_dir, environ={})
    return dataclasses.replace(base, webhooks=WebhookSettings(allow_private_networks=True))


async def with_core(data_dir: Path, work: Callable[[Core], Any]) -> Any:
    """Run ``work`` on a Core of the instance in ``data_dir``, as the CLI does."""
    settings = instance_settings(data_dir)
    core = build_core(settings, instance_secret=load_or_create_secret(settings.secret_key_path))
    await core.store.open()
    try:
        return await work(core)
    finally:
        await core.bus.close()
        await core.store.close()


async def populate(data_dir: Path) -> dict[str, Any]:
    """An instance with a user, an API key, an OAuth grant, devices and a webhook."""

    async def work(core: Core) -> dict[str, Any]:
        account = await make_account(core, "owner@example.com")
        _, oauth_token = await link_oauth_client(core, account)
        principal = await core.auth.authenticate(account.key)
        lamp = await core.devices.create(principal, type="dimmer", name="Lamp", source="cli")
        await core.devices.set_state(
            principal, lamp.id, {"brightness": 30, "power": "OFF"}, source="cli"
        )
        await core.devices.create(principal, type="switch", name="Fan", source="cli")
        webhook, secret = await core.webhooks.create(
            principal, {"url": "http://127.0.0.1:9/hook", "event_types": ["device.deleted"]}
        )
        return {
            "key": account.key,
            "oauth_token": oauth_token,
            "lamp": lamp.id,
            "webhook": webhook.id,
            "secret": secret,
        }

    result: dict[str, Any] = await with_core(data_dir, work)
    return result


def scribble_over_table(path: Path, table: str) -> None:
    """Overwrite the root page of a table, as a failing disk might."""
    conn = sqlite3.connect(path)
    try:
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    raw = bytearray(path.read_bytes())
    start = (root[0] - 1) * size
    raw[start : start + size] = b"\xa5" * size
    path.write_bytes(bytes(raw))
