"""Live updates: one WebSocket per open dashboard, fed from the event bus, scoped to a tenant.

The hub subscribes to the bus (never to the request that made a change), so a change from
Alexa, IFTTT, the API or another replica's relay reaches every open page the same way. Each
connection has a bounded send queue: a client that cannot keep up is closed (1013) and its
page reconnects and fetches a fresh snapshot, so it never shows stale state. Closing the
app closes every socket with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import read_form
from staterelay.browser.household import webhook_name
from staterelay.browser.middleware import origin_allowed
from staterelay.browser.principal import session_principal
from staterelay.browser.sessions import current_user
from staterelay.browser.state import session_cookie_name
from staterelay.core import Core
from staterelay.core.errors import NotAuthenticated
from staterelay.core.events import (
    ActivityRecorded,
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    StateChanged,
)
from staterelay.core.records import ActivityEntry, Principal
from staterelay.core.webhooks import MAX_WEBHOOKS_PER_TENANT
from staterelay.ui.present import activity_view, device_view

_LOGGER = logging.getLogger(__name__)

QUEUE_SIZE: Final = 256  # messages waiting for one client before it counts as too slow
HEARTBEAT: Final = 25.0  # seconds between pings; a missing pong closes the socket
MAX_MESSAGE: Final = 4096  # bytes a client may send in one message (it only sends pings)
RECHECK: Final = 60.0  # seconds between checks that the session or token is still valid
CLOSE_TIMEOUT: Final = 5.0
ACTIVITY_BATCH: Final = 50
SLOW_CLIENT: Final = 4000  # private close code telling the page it missed messages
PER_CREDENTIAL: Final = 20  # limits.websockets_per_credential
PER_HOUSEHOLD: Final = 100  # limits.websockets_per_household
CAP_RETRY_AFTER: Final = 30  # seconds a refused client is asked to wait

Validity = Callable[[], Awaitable[bool]]


class LiveClient:
    """One open socket: its tenant, its bounded queue and its writer."""

    def __init__(self, ws: web.WebSocketResponse, tenant_id: str, queue_size: int) -> None:
        self.ws = ws
        self.tenant_id = tenant_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.kicked: asyncio.Task[None] | None = None

    def offer(self, text: str) -> None:
        """Queue a message; a full queue closes the connection instead of growing."""
        if self.kicked is not None:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            _LOGGER.info("closing a live connection of %s: it fell behind", self.tenant_id)
            self.kicked = asyncio.ensure_future(
                self.close(WSCloseCode.TRY_AGAIN_LATER, b"too slow; reconnect and resync")
            )

    async def write(self) -> None:
        """Send queued messages in order until the socket closes."""
        while not self.ws.closed:
            text = await self.queue.get()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close(self, code: int, message: bytes) -> None:
        """Close the socket with ``code`` (bounded in time)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=message), CLOSE_TIMEOUT)


class LiveHub:
    """Per-tenant sets of live connections, fed by bus subscriptions."""

    def __init__(
        self,
        core: Core,
        *,
        queue_size: int = QUEUE_SIZE,
        heartbeat: float = HEARTBEAT,
        recheck: float = RECHECK,
        per_credential: int = PER_CREDENTIAL,
        per_household: int = PER_HOUSEHOLD,
    ) -> None:
        self._core = core
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.recheck = recheck
        self.per_credential = per_credential
        self.per_household = per_household
        # Sockets held (upgrading or open) per credential and per tenant, for the caps.
        self._held_by_credential: Counter[str] = Counter()
        self._held_by_tenant: Counter[str] = Counter()
        self._tenants: dict[str, set[LiveClient]] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._last_activity: dict[str, int] = {}
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._refetch: set[str] = set()
        self._closing = False

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe to the events open pages show."""
        bus = self._core.bus
        self._unsubscribe = [
            bus.subscribe(StateChanged, self._on_state),
            bus.subscribe(DeviceAdded, self._on_added),
            bus.subscribe(DeviceUpdated, self._on_updated),
            bus.subscribe(DeviceRemoved, self._on_removed),
            bus.subscribe(ActivityRecorded, self._on_activity),
        ]

    async def shutdown(self) -> None:
        """Close every connection with 1001 (going away); new ones are refused."""
        self._closing = True
        await self.disconnect_all(WSCloseCode.GOING_AWAY, b"server shutdown")

    async def disconnect_all(self, code: int, message: bytes) -> None:
        """Close every open connection with ``code``; pages reconnect and resync."""
        clients = [client for group in self._tenants.values() for client in group]
        await asyncio.gather(*(client.close(code, message) for client in clients))

    async def stop(self) -> None:
        """Unsubscribe and cancel pending activity fetches."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def connections(self, tenant_id: str | None = None) -> int:
        """How many sockets are open (for one tenant, or in all)."""
        if tenant_id is not None:
            return len(self._tenants.get(tenant_id, ()))
        return sum(len(group) for group in self._tenants.values())

    # serving ---------------------------------------------------------------------------------
    def refusal(self, principal: Principal) -> tuple[str, str] | None:
        """(cap, reason) when one more socket for ``principal`` would pass a cap, else None.

        Call it right before ``serve`` with nothing awaited in between: ``serve`` counts
        the socket before its first ``await``, so concurrent upgrades cannot both slip in.
        """
        if self._held_by_credential[principal.actor] >= self.per_credential:
            return "credential", (
                f"This sign-in already has {self.per_credential} live feeds open; close one "
                "(another tab or device) and try again."
            )
        if self._held_by_tenant[principal.tenant_id] >= self.per_household:
            return "household", (
                f"Your household already has {self.per_household} live feeds open; close "
                "one and try again."
            )
        return None

    async def serve(
        self, request: web.Request, principal: Principal, still_valid: Validity
    ) -> web.WebSocketResponse:
        """Upgrade the request and push the tenant's events until either side closes."""
        credential, tenant_id = principal.actor, principal.tenant_id
        self._held_by_credential[credential] += 1
        self._held_by_tenant[tenant_id] += 1
        self._core.counters.live_connections += 1
        try:
            return await self._serve(request, principal, still_valid)
        finally:
            self._core.counters.live_connections -= 1
            _release(self._held_by_credential, credential)
            _release(self._held_by_tenant, tenant_id)

    async def _serve(
        self, request: web.Request, principal: Principal, still_valid: Validity
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat, max_msg_size=MAX_MESSAGE, compress=False
        )
        await ws.prepare(request)
        if self._closing:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
            return ws
        client = LiveClient(ws, principal.tenant_id, self.queue_size)
        self._tenants.setdefault(client.tenant_id, set()).add(client)
        writer = asyncio.create_task(client.write(), name="live-writer")
        checker = asyncio.create_task(self._keep_checking(client, still_valid), name="live-check")
        client.offer(json.dumps({"type": "hello", "heartbeat": self.heartbeat}))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT and message.data == "ping":
                    client.offer('{"type":"pong"}')
        finally:
            group = self._tenants.get(client.tenant_id)
            if group is not None:
                group.discard(client)
                if not group:
                    del self._tenants[client.tenant_id]
            for task in (writer, checker):
                task.cancel()
            await asyncio.gather(writer, checker, return_exceptions=True)
            if client.kicked is not None:
                await client.kicked
            if not ws.closed:
                await client.close(WSCloseCode.OK, b"")
        return ws

    async def _keep_checking(self, client: LiveClient, still_valid: Validity) -> None:
        """Close the socket once its session ends or its token is revoked."""
        while True:
            await asyncio.sleep(self.recheck)
            try:
                valid = await still_valid()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("checking a live connection's credential failed")
                continue
            if not valid:
                await client.close(WSCloseCode.POLICY_VIOLATION, b"signed out")
                return

    # fan-out ---------------------------------------------------------------------------------
    def send(self, tenant_id: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for every connection of ``tenant_id`` (serialized once)."""
        group = self._tenants.get(tenant_id)
        if not group:
            return
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        for client in tuple(group):
            client.offer(text)

    def _activity(
        self,
        tenant_id: str,
        entries: Sequence[ActivityEntry],
        types: dict[str, str],
        webhooks: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        if entries:
            newest = max(entry.id for entry in entries)
            if newest > self._last_activity.get(tenant_id, 0):
                self._last_activity[tenant_id] = newest
        return [activity_view(entry, types, webhooks) for entry in entries]

    def _on_state(self, event: StateChanged) -> None:
        if event.tenant_id not in self._tenants:
            return
        device = event.device
        self.send(
            event.tenant_id,
            {
                "type": "device.pressed" if event.pressed else "device.state",
                "device": device_view(device),
                "activity": self._activity(
                    event.tenant_id, event.activity, {device.id: device.type}
                ),
            },
        )

    def _on_added(self, event: DeviceAdded) -> None:
        if event.tenant_id not in self._tenants:
            return
        device = event.device
        self.send(
            event.tenant_id,
            {
                "type": "device.added",
                "device": device_view(device),
                "activity": self._activity(
                    event.tenant_id, (event.activity,), {device.id: device.type}
                ),
            },
        )

    def _on_updated(self, event: DeviceUpdated) -> None:
        if event.tenant_id not in self._tenants:
            return
        device = event.device
        self.send(
            event.tenant_id,
            {
                "type": "device.updated",
                "device": device_view(device),
                "activity": self._activity(
                    event.tenant_id, event.activity, {device.id: device.type}
                ),
            },
        )

    def _on_removed(self, event: DeviceRemoved) -> None:
        if event.tenant_id not in self._tenants:
            return
        device = event.device
        self.send(
            event.tenant_id,
            {
                "type": "device.removed",
                "device": {"id": device.id, "name": device.name},
                "activity": self._activity(
                    event.tenant_id, (event.activity,), {device.id: device.type}
                ),
            },
        )

    def _on_activity(self, event: ActivityRecorded) -> None:
        if event.tenant_id not in self._tenants:
            return
        if event.activity:
            self.send(
                event.tenant_id,
                {
                    "type": "activity",
                    "activity": self._activity(event.tenant_id, event.activity, {}),
                },
            )
            return
        # Delivery results are announced without their rows: read what is new, once per
        # tenant at a time, however many results arrive meanwhile.
        if event.tenant_id in self._fetching:
            self._refetch.add(event.tenant_id)
            return
        task = asyncio.ensure_future(self._fetch_activity(event.tenant_id))
        self._fetching[event.tenant_id] = task

    async def _fetch_activity(self, tenant_id: str) -> None:
        try:
            while True:
                self._refetch.discard(tenant_id)
                await self._push_new_activity(tenant_id)
                if tenant_id not in self._refetch:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("reading new activity for live pages failed")
        finally:
            self._fetching.pop(tenant_id, None)

    async def _push_new_activity(self, tenant_id: str) -> None:
        reader = Principal(
            tenant_id=tenant_id,
            user_id="",
            scopes=frozenset({"read"}),
            credential="system",
            credential_id="live",
        )
        page = await self._core.activity.list(reader, limit=ACTIVITY_BATCH)
        last = self._last_activity.get(tenant_id, 0)
        fresh = [entry for entry in page.items if entry.id > last]
        if not fresh or tenant_id not in self._tenants:
            return
        hooks = await self._core.webhooks.list(reader, limit=MAX_WEBHOOKS_PER_TENANT)
        names = {hook.id: webhook_name(hook) for hook in hooks.items}
        self.send(
            tenant_id,
            {"type": "activity", "activity": self._activity(tenant_id, fresh, {}, names)},
        )


def _release(held: Counter[str], key: str) -> None:
    held[key] -= 1
    if held[key] <= 0:
        del held[key]


LIVE_KEY: Final = web.AppKey("staterelay.ui.live", LiveHub)


async def live_context(app: web.Application) -> AsyncIterator[None]:
    """Create the hub and subscribe it for the life of the app."""
    limits = app[SETTINGS_KEY].limits
    hub = LiveHub(
        app[CORE_KEY],
        per_credential=limits.websockets_per_credential,
        per_household=limits.websockets_per_household,
    )
    app[LIVE_KEY] = hub
    hub.start()
    try:
        yield
    finally:
        await hub.shutdown()
        await hub.stop()


async def close_live_connections(app: web.Application) -> None:
    """On shutdown, before handlers are waited for: close every socket with 1001."""
    hub = app.get(LIVE_KEY)
    if hub is not None:
        await hub.shutdown()


routes = web.RouteTableDef()


@routes.get("/dashboard/ws", name="live")
async def live_socket(request: web.Request) -> web.StreamResponse:
    """The live feed of the caller's tenant: session cookie, or a bearer token for scripts."""
    core = request.config_dict[CORE_KEY]
    hub = request.config_dict[LIVE_KEY]
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(request, origin):
        _LOGGER.warning("refused a live connection from origin %r", origin[:200])
        return _refusal(403, "This live feed does not accept connections from other sites.")
    token = _token(request)
    still_valid: Validity
    if token:
        try:
            principal = await core.auth.authenticate(token)
        except NotAuthenticated:
            return _refusal(401, "The token is unknown, revoked or expired.")
        still_valid = _token_check(core, token)
    else:
        signed_in = await current_user(request)
        if signed_in is None:
            return _refusal(401, "Sign in first, or send a bearer token.")
        if origin is None:
            # Browsers always send Origin on a WebSocket; a cookie without one is not a page.
            return _refusal(403, "A cookie-authenticated live feed needs an Origin header.")
        principal = session_principal(signed_in)
        still_valid = _session_check(core, request.cookies.get(session_cookie_name(request), ""))
    if not principal.can("read"):
        return _refusal(403, "This credential cannot read devices.")
    if principal.device_ids is not None:
        # The feed carries every device's changes; a key limited to some must not see them.
        return _refusal(403, "A device-scoped API key cannot open the household's live feed.")
    if not web.WebSocketResponse().can_prepare(request).ok:
        return _refusal(400, "This is a WebSocket endpoint.")
    refused = hub.refusal(principal)
    if refused is not None:
        cap, reason = refused
        core.counters.live_refused(cap)
        _LOGGER.info(
            "refused a live connection of %s: the %s cap is reached", principal.tenant_id, cap
        )
        response = _refusal(429, reason)
        response.headers["Retry-After"] = str(CAP_RETRY_AFTER)
        return response
    return await hub.serve(request, principal, still_valid)


@routes.post("/dashboard/live/check", name="live_check")
async def live_check(request: web.Request) -> web.StreamResponse:
    """What a page whose live feed was refused asks: passing here means the origin is fine.

    Browsers hide why a WebSocket was refused; this POST goes through the same origin check
    (which answers a refusal with its reason as JSON), so the page can show it.
    """
    form = await read_form(request)
    await verify_csrf(request, form)
    if await current_user(request) is None:
        return _refusal(401, "Sign in first.")
    return web.json_response({"ok": True})


def _token_check(core: Core, token: str) -> Validity:
    async def still_valid() -> bool:
        try:
            await core.auth.authenticate(token)
        except NotAuthenticated:
            return False
        return True

    return still_valid


def _session_check(core: Core, secret: str) -> Validity:
    async def still_valid() -> bool:
        return await core.sessions.resolve(secret) is not None

    return still_valid


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    query = request.query.get("token", "").strip()
    return query or None


def _refusal(status: int, text: str) -> web.Response:
    return web.json_response({"error": text, "status": status}, status=status)
