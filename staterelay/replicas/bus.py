"""The event bus across replicas: local delivery at once, plus Redis pub/sub to the others.

``publish`` hands the event to this process's subscribers exactly as ``InProcessBus`` does,
then queues it (bounded, never awaited) for a background task that publishes it on the
``<prefix>:events`` channel. A second task subscribes to that channel and hands other
replicas' events to the local subscribers, skipping this process's own by their origin id.

Pub/sub is at most once and Redis is only an accelerator: while it is down, events for the
other replicas are dropped (with a warning at most once a minute), their dispatchers find
new outbox rows by polling and their pages resync when they reconnect; the subscriber
retries with backoff and relaying resumes when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from staterelay.core.bus import InProcessBus
from staterelay.core.event_codec import RELAYED_EVENTS, decode_event, encode_event
from staterelay.replicas.link import RedisLink

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

_LOGGER = logging.getLogger(__name__)

E = TypeVar("E")

QUEUE_SIZE: Final = 1024  # events waiting for the publisher before new ones are dropped
WARN_EVERY: Final = 60.0  # seconds between warnings about dropped or unreadable events
FIRST_SUBSCRIBE_WAIT: Final = 2.0  # how long start() waits for the channel subscription
PROBE_EVERY: Final = 1.0  # seconds between pings on the subscription while Redis counts as down


class RedisBus:
    """``EventBus`` whose events also reach, and come from, the other replicas."""

    def __init__(self, link: RedisLink, *, queue_size: int = QUEUE_SIZE) -> None:
        self._local = InProcessBus()
        self._link = link
        self.channel = link.key("events")
        self.origin = uuid.uuid4().hex
        self._outgoing: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._dropped = 0
        self._unreadable = 0
        self._last_warning: dict[str, float] = {}
        self.received = 0  # events from other replicas handed to local subscribers
        self.publish_failures = 0  # events that did not go out to the other replicas

    # EventBus ----------------------------------------------------------------------------
    def publish(self, event: object) -> None:
        """Deliver locally now; queue the event for the other replicas without waiting."""
        self._local.publish(event)
        if not self._tasks or type(event) not in RELAYED_EVENTS:
            return
        if self._link.down:
            self._drop()
            return
        try:
            self._outgoing.put_nowait(event)
        except asyncio.QueueFull:
            self._drop()

    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Register a local handler (for this process's events and the other replicas')."""
        return self._local.subscribe(event_type, handler)

    async def drain(self) -> None:
        """Wait for the local handlers started so far."""
        await self._local.drain()

    async def close(self) -> None:
        """Stop relaying, then cancel local handlers."""
        await self.stop()
        await self._local.close()

    # relay tasks -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the publisher and subscriber; wait briefly for the first subscription."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="redis-bus-publisher"),
            asyncio.create_task(self._subscribe_forever(), name="redis-bus-subscriber"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_SUBSCRIBE_WAIT):
                await self._subscribed.wait()

    async def stop(self) -> None:
        """Cancel the relay tasks (queued outgoing events are dropped)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish_forever(self) -> None:
        client = self._link.client
        while True:
            event = await self._outgoing.get()
            if self._link.down:
                self._drop()
                continue
            try:
                payload = encode_event(event, self.origin)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                _LOGGER.exception("cannot encode %s for the other replicas", type(event).__name__)
                continue
            try:
                await client.publish(self.channel, payload)
            except self._link.errors as error:
                self._link.failed(error)
                self._drop()
            else:
                self._link.succeeded()

    async def _subscribe_forever(self) -> None:
        while True:
            pubsub = self._link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._link.succeeded()
                self._subscribed.set()
                await self._listen(pubsub)
            except self._link.errors as error:
                self._link.failed(error)
                self._subscribed.set()  # the first attempt is over: start() need not wait
            finally:
                with contextlib.suppress(*self._link.errors):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
            await asyncio.sleep(self._link.retry_in())

    async def _listen(self, pubsub: PubSub) -> None:
        """Hand on other replicas' events; while another user of the link finds Redis down
        but this connection still stands, ping through it to learn when Redis answers."""
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PROBE_EVERY)
            if message is None:
                if self._link.down:
                    await pubsub.ping()
                continue
            kind = message.get("type")
            if kind == "message":
                self._receive(message["data"])
            elif kind == "pong":
                self._link.succeeded()

    def _receive(self, data: Any) -> None:
        try:
            origin, event = decode_event(data)
        except ValueError as error:
            self._unreadable += 1
            self._warn("unreadable", "ignored %d unreadable event(s): %s", self._unreadable, error)
            return
        if origin == self.origin:
            return
        self.received += 1
        self._local.publish(event)

    def _drop(self) -> None:
        self.publish_failures += 1
        self._dropped += 1
        self._warn(
            "dropped",
            "dropped %d event(s) for the other replicas: Redis at %s is unreachable or slow",
            self._dropped,
            self._link.where,
        )

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` at most once per ``WARN_EVERY`` seconds per kind."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._last_warning[kind] = now
            _LOGGER.warning(message, *args)
            if kind == "dropped":
                self._dropped = 0
            else:
                self._unreadable = 0
