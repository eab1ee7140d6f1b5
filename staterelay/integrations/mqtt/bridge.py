"""The bridge: one broker connection per deployment, kept up while this process leads.

``Bridge.run`` resolves the household, asks the store for the lead (one replica runs the
bridge; on SQLite the one process always leads), then keeps one ``aiomqtt`` connection,
reconnecting with capped backoff. Each connection subscribes to the command topics (and
Home Assistant's status), says ``online``, publishes every device's discovery configs and
state, and clears retained topics of devices deleted meanwhile.

Request handlers never wait for the broker: bus handlers only mark a device as dirty, and
one writer task publishes the newest state of each dirty device. Commands run through
core one after the other, in the order the broker delivered them; refused ones are
reported on ``<base>/error``. The bridge never subscribes to a topic it publishes to, so
nothing it sends comes back to it as a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson

from staterelay.core import Core
from staterelay.core.clock import iso
from staterelay.core.errors import StateRelayError
from staterelay.core.events import DeviceAdded, DeviceRemoved, DeviceUpdated, StateChanged
from staterelay.core.records import Device, OutboxItem
from staterelay.core.storage.leadership import Lead
from staterelay.integrations.mqtt.discovery import UNIQUE_PREFIX, config_topics, configs
from staterelay.integrations.mqtt.household import (
    HouseholdUnresolved,
    Served,
    bridge_principal,
    resolve,
)
from staterelay.integrations.mqtt.messages import event_message, parse_command, state_message
from staterelay.integrations.mqtt.status import BridgeStatus
from staterelay.integrations.mqtt.topics import OFFLINE, ONLINE, Command, Topics
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

SOURCE: Final = "mqtt"
PUBLISH_TIMEOUT: Final = 5.0
PAGE: Final = 200


@dataclass(frozen=True, slots=True)
class BridgeTuning:
    """Timings of the bridge; tests shorten them."""

    backoff_start: float = 0.5
    backoff_cap: float = 30.0
    lead_retry: float = 5.0
    resolve_retry: float = 10.0
    orphan_window: float = 1.0
    ha_online_delay: float = 1.0


@dataclass(slots=True)
class _Pending:
    """A device whose topics must be published again: its newest record and what changed."""

    device: Device
    config: bool = False
    removed: bool = False


class Bridge:
    """The MQTT bridge of one application."""

    def __init__(
        self,
        core: Core,
        settings: Settings,
        served: Served,
        *,
        tuning: BridgeTuning | None = None,
    ) -> None:
        self._core = core
        self._settings = settings
        self._mqtt = settings.mqtt
        self._served = served
        self._tuning = tuning or BridgeTuning()
        self.topics = Topics(self._mqtt.base_topic, self._mqtt.discovery_prefix)
        self.status = BridgeStatus()
        self.leading = False
        self._client: aiomqtt.Client | None = None
        self._dirty: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._known: dict[str, Device] = {}
        self._gone: set[str] = set()  # devices deleted: never published again
        self._turn = asyncio.Lock()  # one publisher of device topics at a time
        self._retained: dict[str, str] = {}  # topic -> device id, read after connecting
        self._sweeping = False

    @property
    def core(self) -> Core:
        """The application's core."""
        return self._core

    @property
    def served_tenant(self) -> str | None:
        """The household the bridge serves, once known."""
        return self._served.tenant_id

    @property
    def served_problem(self) -> str | None:
        """Why the household is not known, if it is not."""
        return self._served.problem

    @property
    def discovery_prefix(self) -> str:
        """Home Assistant's discovery prefix, or "off"."""
        return self.topics.prefix if self._mqtt.discovery else "off (mqtt.discovery is false)"

    @property
    def broker_name(self) -> str:
        """The broker's scheme, host and port (never its credentials)."""
        url = urlsplit(self._mqtt.url or "")
        secure = url.scheme == "mqtts"
        return f"{url.scheme}://{url.hostname}:{url.port or (8883 if secure else 1883)}"

    # the bus (every replica hears it; only the leader keeps what it hears) ------------------
    def subscribe(self) -> list[Any]:
        """Hear of device changes; returns the unsubscribe functions."""
        bus = self._core.bus
        return [
            bus.subscribe(StateChanged, self._on_state),
            bus.subscribe(DeviceAdded, self._on_added),
            bus.subscribe(DeviceUpdated, self._on_updated),
            bus.subscribe(DeviceRemoved, self._on_removed),
        ]

    def _ours(self, tenant_id: str) -> bool:
        return self.leading and tenant_id == self._served.tenant_id

    def _on_state(self, event: StateChanged) -> None:
        if self._ours(event.tenant_id):
            self._mark(event.device)

    def _on_added(self, event: DeviceAdded) -> None:
        if self._ours(event.tenant_id):
            self._mark(event.device, config=True)

    def _on_updated(self, event: DeviceUpdated) -> None:
        if self._ours(event.tenant_id):
            self._mark(event.device, config=True)

    def _on_removed(self, event: DeviceRemoved) -> None:
        if self._ours(event.tenant_id):
            self._dirty[event.device.id] = _Pending(event.device, removed=True)
            self._wake.set()

    def _mark(self, device: Device, *, config: bool = False) -> None:
        pending = self._dirty.get(device.id)
        if pending is not None and pending.removed:
            return
        if pending is None:
            self._dirty[device.id] = _Pending(device, config=config)
        else:
            if device.version >= pending.device.version:
                pending.device = device
            pending.config = pending.config or config
        self._wake.set()

    # leading ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Resolve the household, take the lead and keep the connection; until cancelled."""
        tuning = self._tuning
        while True:
            if not await self._resolve():
                await asyncio.sleep(tuning.resolve_retry)
                continue
            try:
                lead = await self._core.store.try_lead(f"mqtt:{self.topics.base}")
            except Exception:
                _LOGGER.warning("the MQTT bridge could not ask for the lead", exc_info=True)
                lead = None
            if lead is None:
                await asyncio.sleep(tuning.lead_retry)
                continue
            try:
                await self._lead(lead)
            finally:
                await lead.release()
            await asyncio.sleep(tuning.lead_retry * random.random())

    async def _resolve(self) -> bool:
        """Learn the served household; False (with the reason kept) when it cannot be told."""
        try:
            tenant_id = await resolve(self._core, self._mqtt.household)
        except HouseholdUnresolved as exc:
            if self._served.problem != str(exc):
                _LOGGER.warning("the MQTT bridge waits: %s", exc)
            self._served.problem = str(exc)
            return False
        self._served.tenant_id, self._served.problem = tenant_id, None
        return True

    async def resolve_household(self) -> None:
        """Resolve the household once at start, so the policy plans rows from the first change."""
        with contextlib.suppress(Exception):
            await self._resolve()

    async def _lead(self, lead: Lead) -> None:
        _LOGGER.info("this process runs the MQTT bridge")
        self.leading = self.status.leader = True
        lost = asyncio.create_task(lead.lost(), name="mqtt-lead")
        connection = asyncio.create_task(self._connect_loop(), name="mqtt-connection")
        try:
            await asyncio.wait({lost, connection}, return_when=asyncio.FIRST_COMPLETED)
            if lost.done():
                _LOGGER.warning("the MQTT bridge lost its lead; it stops here")
        finally:
            self.leading = self.status.leader = False
            self._dirty.clear()
            for task in (lost, connection):
                task.cancel()
            await asyncio.gather(lost, connection, return_exceptions=True)

    # the connection ---------------------------------------------------------------------------
    def _new_client(self) -> aiomqtt.Client:
        mqtt = self._mqtt
        assert mqtt.url is not None
        url = urlsplit(mqtt.url)
        secure = url.scheme == "mqtts"
        context: ssl.SSLContext | None = None
        if secure:
            context = ssl.create_default_context(cafile=mqtt.tls_ca_file)
            if not mqtt.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        username = mqtt.username or (unquote(url.username) if url.username else None)
        password = mqtt.password or (unquote(url.password) if url.password else None)
        return aiomqtt.Client(
            url.hostname or "localhost",
            url.port or (8883 if secure else 1883),
            username=username,
            password=password,
            identifier=mqtt.client_id or f"staterelay-{self.topics.base.replace('/', '-')}",
            will=aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True),
            keepalive=30,
            timeout=10.0,
            tls_context=context,
            # Small packets at once: with Nagle's algorithm a command's acknowledgement and
            # the state message after it wait on the broker's delayed ACKs (about 40 ms each).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def _connect_loop(self) -> None:
        tuning = self._tuning
        backoff = tuning.backoff_start
        while True:
            try:
                async with self._new_client() as client:
                    backoff = tuning.backoff_start
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                self._failed("connection", f"broker connection: {exc}")
            except Exception:
                _LOGGER.exception("the MQTT bridge's session failed; it reconnects")
                self._failed("connection", "the session failed (see the log)")
            finally:
                self._client = None
                self.status.connected = False
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, tuning.backoff_cap)

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: subscribe, announce, publish everything, then serve until it drops."""
        topics = self.topics
        for topic in topics.command_filters:
            await client.subscribe(topic, qos=1)
        if self._mqtt.discovery:
            await client.subscribe(topics.ha_status, qos=1)
        self._retained.clear()
        self._sweeping = True
        for topic in topics.retained_filters:
            await client.subscribe(topic, qos=1)
        await self._publish(client, topics.status, ONLINE, kind="status", retain=True)
        self._client = client
        self.status.connected = True
        self.status.connected_at = time.time()
        _LOGGER.info("the MQTT bridge is connected to %s", self.broker_name)
        tasks = [
            asyncio.create_task(self._read(client), name="mqtt-reader"),
            asyncio.create_task(self._write(client), name="mqtt-writer"),
        ]
        try:
            await self._publish_all(client)
            # Only now is every device known, so the sweep cannot take one for deleted.
            tasks.append(asyncio.create_task(self._sweep(client), name="mqtt-sweep"))
            done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except asyncio.CancelledError:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(topics.status, OFFLINE, qos=1, retain=True, timeout=1.0)
            raise
        finally:
            self._client = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _failed(self, kind: str, message: str) -> None:
        self.status.errors[kind] += 1
        self.status.last_error = message
        self.status.last_error_at = time.time()
        _LOGGER.warning("MQTT bridge: %s", message)

    async def _publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: str | bytes,
        *,
        kind: str,
        retain: bool,
        qos: int = 1,
    ) -> None:
        await client.publish(topic, payload, qos=qos, retain=retain, timeout=PUBLISH_TIMEOUT)
        self.status.published[kind] += 1

    # publishing state and discovery -----------------------------------------------------------
    async def _devices(self) -> list[Device]:
        tenant_id = self._served.tenant_id
        if tenant_id is None:
            return []
        principal = bridge_principal(tenant_id)
        devices: list[Device] = []
        cursor: str | None = None
        while True:
            page = await self._core.devices.list(principal, cursor=cursor, limit=PAGE)
            devices.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return devices

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        """Every device's configs and state: after connecting, and when HA comes online."""
        devices = await self._devices()
        listed = {device.id for device in devices}
        for device_id in set(self._known) - listed:
            del self._known[device_id]
        for device in devices:
            await self._publish_device(client, device, config=True)
        await self._publish_index(client)
        self.status.devices = len(self._known)
        if self._mqtt.discovery:
            self.status.discovery_at = time.time()

    async def _publish_device(
        self, client: aiomqtt.Client, device: Device, *, config: bool
    ) -> None:
        """Publish a device's configs and state, never older than what went out before and
        never for a device deleted meanwhile (publishers take turns)."""
        async with self._turn:
            if device.id in self._gone:
                return
            known = self._known.get(device.id)
            if known is not None and known.version > device.version:
                device = known
            self._known[device.id] = device
            if config and self._mqtt.discovery:
                for found in configs(self.topics, device, self._settings.public_url):
                    await self._publish(
                        client,
                        found.topic,
                        orjson.dumps(found.payload),
                        kind="config",
                        retain=True,
                    )
            await self._publish(
                client,
                self.topics.state(device.id),
                orjson.dumps(state_message(device)),
                kind="state",
                retain=True,
                # QoS 0: every state is published again on every connect, so a message lost
                # with a connection is replaced; and no PUBACK to the bridge, whose delayed
                # ACK would hold the broker's next packet to us (a command) back by up to
                # 40 ms (Nagle).
                qos=0,
            )

    async def _clear_device(self, client: aiomqtt.Client, device: Device) -> None:
        """Empty retained payloads: Home Assistant forgets the entities, the broker the state."""
        async with self._turn:
            self._gone.add(device.id)
            self._known.pop(device.id, None)
            for topic in (*config_topics(self.topics, device), self.topics.state(device.id)):
                await self._publish(client, topic, b"", kind="clear", retain=True)
            self.status.devices = len(self._known)

    async def _write(self, client: aiomqtt.Client) -> None:
        """Publish dirty devices, newest record first come first served, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            listed = False  # a device came, went or changed its name or room
            while self._dirty:
                device_id = next(iter(self._dirty))
                pending = self._dirty.pop(device_id)
                try:
                    if pending.removed:
                        await self._clear_device(client, pending.device)
                    else:
                        await self._publish_device(client, pending.device, config=pending.config)
                except BaseException:
                    self._dirty.setdefault(device_id, pending)
                    raise
                listed = listed or pending.removed or pending.config
            if listed:
                await self._publish_index(client)

    async def _publish_index(self, client: aiomqtt.Client) -> None:
        """``<base>/devices``: every device's id, name, type and room, for flows to look up."""
        index = [
            {"id": device.id, "name": device.name, "type": device.type, "room": device.room}
            for device in sorted(self._known.values(), key=lambda device: device.seq)
        ]
        await self._publish(
            client, self.topics.devices, orjson.dumps(index), kind="index", retain=True
        )

    async def _sweep(self, client: aiomqtt.Client) -> None:
        """After the broker replayed its retained topics, clear those of deleted devices."""
        await asyncio.sleep(self._tuning.orphan_window)
        self._sweeping = False
        for topic in self.topics.retained_filters:
            await client.unsubscribe(topic)
        orphans = [
            topic for topic, device_id in self._retained.items() if device_id not in self._known
        ]
        self._retained.clear()
        for topic in orphans:
            await self._publish(client, topic, b"", kind="clear", retain=True)
        if orphans:
            _LOGGER.info("MQTT bridge: cleared %d retained topics of deleted devices", len(orphans))

    async def _republish_later(self, client: aiomqtt.Client) -> None:
        await asyncio.sleep(self._tuning.ha_online_delay * random.random())
        for device in await self._devices():
            self._mark(device, config=True)

    # commands ---------------------------------------------------------------------------------
    async def _read(self, client: aiomqtt.Client) -> None:
        """Handle what the broker delivers, one message after the other."""
        topics = self.topics
        background: set[asyncio.Task[None]] = set()
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == topics.ha_status:
                if payload.strip() == ONLINE.encode():
                    task = asyncio.create_task(self._republish_later(client))
                    background.add(task)
                    task.add_done_callback(background.discard)
                continue
            command = topics.command(topic)
            if command is not None:
                await self._command(client, topic, command, payload, retained=message.retain)
            elif self._sweeping and message.retain and payload:
                self._note_retained(topic, payload)

    def _note_retained(self, topic: str, payload: bytes) -> None:
        """Remember a retained state or discovery topic of this bridge's, by its device."""
        device_id = self.topics.state_device(topic)
        if device_id is None:
            device_id = self.topics.config_device(topic)
            try:
                config = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return
            if device_id is None or not self._our_config(config, device_id):
                return
        self._retained[topic] = device_id

    def _our_config(self, config: object, device_id: str) -> bool:
        """Whether a discovery config is this bridge's: a StateRelay device whose topics lie
        under this bridge's base topic (another instance on the broker keeps its own)."""
        if not isinstance(config, dict):
            return False
        device = config.get("device")
        identifiers = device.get("identifiers") if isinstance(device, dict) else None
        unique = config.get("unique_id")
        staterelay = (isinstance(unique, str) and unique.startswith(UNIQUE_PREFIX)) or (
            isinstance(identifiers, list) and f"{UNIQUE_PREFIX}{device_id}" in identifiers
        )
        base = f"{self.topics.base}/"
        topics = [
            value
            for key, value in config.items()
            if (key == "topic" or key.endswith("_topic")) and isinstance(value, str)
        ]
        return staterelay and any(value.startswith(base) for value in topics)

    async def _command(
        self,
        client: aiomqtt.Client,
        topic: str,
        command: Command,
        payload: bytes,
        *,
        retained: bool,
    ) -> None:
        """Apply one command through core; report it on the error topic when refused."""
        status = self.status
        if retained:
            # A retained command would switch the device again at every reconnect.
            status.commands["ignored"] += 1
            await self._report(client, topic, command.device_id, "retained commands are ignored")
            return
        tenant_id = self._served.tenant_id
        if tenant_id is None:
            return
        principal = bridge_principal(tenant_id)
        devices = self._core.devices
        try:
            if command.press:
                await devices.press(principal, command.device_id, source=SOURCE)
            else:
                values = parse_command(payload, command.prop)
                await devices.set_state(principal, command.device_id, values, source=SOURCE)
        except StateRelayError as exc:
            status.commands["refused"] += 1
            await self._report(client, topic, command.device_id, exc.detail)
            return
        except Exception:
            _LOGGER.exception("MQTT bridge: the command on %s failed", topic)
            status.commands["refused"] += 1
            await self._report(client, topic, command.device_id, "internal error")
            return
        status.commands["applied"] += 1
        status.last_command_at = time.time()
        status.last_command_device = command.device_id

    async def _report(self, client: aiomqtt.Client, topic: str, device_id: str, error: str) -> None:
        self._failed("command", f"command on {topic} refused: {error}")
        body = {"topic": topic, "device_id": device_id, "error": error, "at": iso(time.time())}
        await self._publish(
            client, self.topics.error, orjson.dumps(body), kind="error", retain=False
        )

    # events from the outbox -------------------------------------------------------------------
    async def publish_event(self, item: OutboxItem) -> str | None:
        """Publish an outbox row's event; None once the broker took it, else why not."""
        client = self._client
        if client is None or not self.leading or item.device_id is None:
            return "not sent: the MQTT broker is not connected"
        try:
            await self._publish(
                client,
                self.topics.event(item.device_id),
                orjson.dumps(event_message(item)),
                kind="event",
                retain=False,
            )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self._failed("publish", f"event not published: {exc}")
            return f"not sent: {exc}"
        return None
