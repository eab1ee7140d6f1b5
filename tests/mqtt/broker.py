"""A Mosquitto of the test's own on a free loopback port, and a subscriber that records.

Each test starts its own broker (the machine's shared one would leak retained messages
between tests) with a generated config: one loopback listener, anonymous clients, no
persistence. It can be killed and started again on the same port mid-test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from tests.skips import unavailable

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_binary() -> str:
    """The Mosquitto executable; skips (fails on CI) when it is not installed."""
    for path in MOSQUITTO_PATHS:
        if Path(path).exists():
            return path
    found = shutil.which("mosquitto")
    if found is None:
        unavailable("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return found


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    """One Mosquitto process on ``port``."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: str = ""
    """More lines of its config (a TLS listener's files)."""

    @property
    def url(self) -> str:
        """The ``mqtt.url`` that reaches it."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        config = self.directory / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest stderr\n{self.extra}",
            encoding="utf-8",
        )
        config.chmod(0o644)
        self.directory.chmod(0o755)
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def kill(self) -> None:
        """Kill it at once (no goodbye to the clients)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None


@dataclass
class Received:
    """One message a subscriber got."""

    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        """The payload as JSON."""
        return orjson.loads(self.payload)


@dataclass
class Subscriber:
    """An MQTT client that records every message on its subscriptions."""

    messages: list[Received] = field(default_factory=list)
    client: aiomqtt.Client | None = None

    def on(self, topic: str) -> list[Received]:
        """The messages received on ``topic``, oldest first."""
        return [message for message in self.messages if message.topic == topic]

    async def wait(self, condition: Callable[[], object], seconds: float = 10.0) -> None:
        """Wait until ``condition()`` is true (a condition that looks at a message not
        received yet, and so raises IndexError or KeyError, is not true yet)."""
        deadline = time.monotonic() + seconds
        while not _holds(condition):
            if time.monotonic() > deadline:
                raise AssertionError(
                    "timed out; received: "
                    + ", ".join(f"{m.topic}={m.payload[:80]!r}" for m in self.messages[-20:])
                )
            await asyncio.sleep(0.01)

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Publish as another client would (Home Assistant, Node-RED)."""
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, retain=retain)


def _holds(condition: Callable[[], object]) -> bool:
    try:
        return bool(condition())
    except (IndexError, KeyError):
        return False


@contextlib.asynccontextmanager
async def subscriber(broker: Broker, *topics: str) -> AsyncIterator[Subscriber]:
    """A client subscribed to ``topics`` that records what arrives, while in the block."""
    recorder = Subscriber()
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        recorder.client = client
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                recorder.messages.append(Received(message.topic.value, payload, message.retain))

        reader = asyncio.create_task(read())
        try:
            yield recorder
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader
