"""Fixtures for delivery tests: a scriptable receiver on loopback and a fast dispatcher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from staterelay.app.factory import DISPATCHER_KEY
from staterelay.core import Core
from staterelay.core.events import OutboxEnqueued
from staterelay.core.records import Device, Principal, Webhook
from staterelay.dispatch import Dispatcher, DispatcherConfig
from staterelay.integrations.webhooks import WebhookSink
from tests.conftest import Account

BIG_CHUNK = b"x" * 65536


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A webhook receiver that records requests and answers as the test scripts it.

    ``/hook`` answers the statuses queued in ``script`` in order, then ``default``;
    ``/redirect`` answers 302 to ``/landing``; ``/hang`` never answers; ``/slow`` answers
    after 0.1 s and counts how many requests overlap; ``/drip`` answers 200 and then a byte
    every 50 ms for 10 s; ``/big`` streams
    ``big_bytes`` of body with a 200; ``/gone`` answers 410; ``/busy`` answers 429 with
    ``Retry-After: 120``.
    """

    server: TestServer | None = None
    requests: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 204
    big_bytes: int = 20 * 1024 * 1024
    big_sent: int = 0
    active: int = 0
    max_active: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        """The loopback URL of one of the receiver's paths."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{path}"

    def at(self, path: str) -> list[Received]:
        """The requests that reached ``path``."""
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, then behave as its path says."""
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        if request.path == "/redirect":
            raise web.HTTPFound(location="/landing")
        if request.path == "/hang":
            await self.release.wait()
            return web.Response(status=204)
        if request.path == "/slow":
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                await asyncio.sleep(0.1)
            finally:
                self.active -= 1
            return web.Response(status=204)
        if request.path == "/drip":
            response = web.StreamResponse(status=200)
            await response.prepare(request)
            try:
                for _ in range(200):
                    await response.write(b".")
                    await asyncio.sleep(0.05)
            except ConnectionError:
                pass
            return response
        if request.path == "/gone":
            return web.Response(status=410)
        if request.path == "/busy":
            return web.Response(status=429, headers={"Retry-After": "120"})
        if request.path == "/big":
            response = web.StreamResponse(status=200)
            response.content_type = "application/octet-stream"
            await response.prepare(request)
            try:
                while self.big_sent < self.big_bytes:
                    await response.write(BIG_CHUNK)
                    self.big_sent += len(BIG_CHUNK)
                await response.write_eof()
            except ConnectionError:
                pass  # the client hung up at its size cap, as it should
            return response
        status = self.script.pop(0) if self.script else self.default
        return web.Response(status=status)


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[Receiver]:
    """A running receiver on 127.0.0.1."""
    recorder = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    recorder.server = await aiohttp_server(app)
    yield recorder
    recorder.release.set()


@pytest.fixture
async def principal(core: Core, account: Account) -> Principal:
    """The household account's principal."""
    return await core.auth.authenticate(account.key)


@pytest.fixture
async def lamp(core: Core, principal: Principal) -> Device:
    """A switch in the household."""
    return await core.devices.create(principal, type="switch", name="Hall lamp", source="api")


HookFactory = Callable[..., Awaitable[tuple[Webhook, str]]]


@pytest.fixture
def make_hook(core: Core, principal: Principal) -> HookFactory:
    """Register a webhook; returns it and its signing secret."""

    async def make(url: str, **fields: Any) -> tuple[Webhook, str]:
        return await core.webhooks.create(principal, {"url": url, **fields})

    return make


StartDispatcher = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def start_dispatcher(app: web.Application, core: Core) -> AsyncIterator[StartDispatcher]:
    """Replace the app's dispatcher with one tuned for tests (fast retries, short timeouts)."""
    await app[DISPATCHER_KEY].stop()
    running: list[tuple[Dispatcher, WebhookSink, Callable[[], None]]] = []

    async def start(
        *, timeout_seconds: float = 1.0, max_response_bytes: int = 65536, **overrides: Any
    ) -> Dispatcher:
        sink = WebhookSink(
            core,
            timeout_seconds=timeout_seconds,
            max_response_bytes=max_response_bytes,
            policy=core.webhooks.policy,
        )
        settings: dict[str, Any] = {
            "owner": f"test-{len(running)}",
            "retry_base_seconds": 0.1,
            "retry_factor": 3.0,
            "poll_seconds": 0.5,
            **overrides,
        }
        dispatcher = Dispatcher(core, {"webhook": sink}, config=DispatcherConfig(**settings))
        unsubscribe = core.bus.subscribe(OutboxEnqueued, lambda _event: dispatcher.wake())
        await dispatcher.start()
        running.append((dispatcher, sink, unsubscribe))
        return dispatcher

    yield start
    for dispatcher, sink, unsubscribe in running:
        unsubscribe()
        await dispatcher.stop()
        await sink.close()


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` (sync or async) until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
