"""The ``google`` outbox sink: Report State, doorbell notifications and Request Sync.

Rows of one user and device arrive in commit order (their ordering key); mergeable state
changes may arrive together and take turns here. A report carries the *whole* state of every
trait the device declares, read when sending (Home Graph overwrites whole traits), so a
later row whose version a sent report already covered is recorded as merged into it. A
Routine trigger's transition is reported with the value it had, so no transition is lost.
A press is an ObjectDetection notification with the row's event id (Google announces only
fresh ones). Request Sync is sent synchronously, so a 404 is seen; one sent after a row was
queued covers it.

Home Graph's answers: 2xx delivered; 401 a new token once; 404 on Request Sync, or on a
report whose follow-up Request Sync 404s too, means Google no longer knows the user: the
link ends (pending rows dropped) and nothing more is sent; 429, 5xx and timeouts are tried
again (first within about a second, honouring Retry-After); other 4xx are final.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from typing import Any, Final

import aiohttp

from staterelay.core import Core
from staterelay.core.delivery import is_routine_trigger
from staterelay.core.keyed_locks import KeyedLocks
from staterelay.core.records import Device, OutboxItem
from staterelay.core.sinks import SinkResult, error_code, parse_retry_after
from staterelay.integrations.google.devices import states
from staterelay.integrations.google.links import SINK, UNKNOWN_TO_GOOGLE, GoogleLinks
from staterelay.integrations.google.serviceaccount import (
    HomeGraphToken,
    KeyFileError,
    Session,
    TokenError,
)
from staterelay.settings import GoogleSettings

_LOGGER = logging.getLogger(__name__)

REPORT_PATH: Final = "/v1/devices:reportStateAndNotification"
SYNC_PATH: Final = "/v1/devices:requestSync"
REPORT_TIMEOUT: Final = aiohttp.ClientTimeout(total=5.0)
SYNC_TIMEOUT: Final = aiohttp.ClientTimeout(total=10.0)  # requestSync takes seconds
NOTIFICATION_MAX_AGE: Final = 30.0  # Google announces a doorbell press only this fresh
MAX_ANSWER_BYTES: Final = 65536
OUTCOMES: Final = ("accepted", "retry", "failed", "gone")

JSON = dict[str, Any]


class GoogleCounters:
    """Home Graph calls by kind (report, sync) and outcome, for ``/metrics``."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()

    def count(self, kind: str, outcome: str) -> None:
        """One more call of ``kind`` that came to ``outcome``."""
        self.calls[(kind, outcome)] += 1


class _Sent:
    """What Google was last told about one device for one user (in memory)."""

    __slots__ = ("event", "version")

    def __init__(self) -> None:
        self.version = 0
        self.event = ""


class HomeGraphSink:
    """Delivers ``google`` outbox rows to the Home Graph API."""

    name = SINK

    def __init__(
        self,
        core: Core,
        settings: GoogleSettings,
        session: Session,
        token: HomeGraphToken,
        links: GoogleLinks,
        counters: GoogleCounters,
    ) -> None:
        self._core = core
        self._base = settings.homegraph_url.rstrip("/")
        self._session = session
        self._token = token
        self._links = links
        self.counters = counters
        self._sent: dict[tuple[str, str], _Sent] = {}
        self._synced: dict[tuple[str, str], tuple[float, str]] = {}
        self._turns: KeyedLocks[tuple[str, str]] = KeyedLocks()

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """Send what one row owes (or find that a call already sent covered it)."""
        key = (item.destination, item.device_id or "")
        async with self._turns.hold(key):
            if await self._links.active(item.tenant_id, item.destination) is None:
                self._forget(item.tenant_id, item.destination)
                return SinkResult(
                    delivered=False,
                    error="not sent: Google Home is no longer linked for this user",
                    permanent=True,
                )
            return await self._deliver(item, key)

    async def close(self) -> None:
        """Write the last results (the application closes the HTTP session)."""
        try:
            await self._links.flush()
        except Exception:
            _LOGGER.exception("could not record the last Google Home results")

    async def _deliver(self, item: OutboxItem, key: tuple[str, str]) -> SinkResult:
        if item.event_type in ("device.created", "device.updated", "device.deleted"):
            return await self._request_sync(item)
        if item.device_id is None:
            return SinkResult(delivered=False, error="not sent: no device", permanent=True)
        device = await self._core.integrations.device(item.tenant_id, item.device_id)
        if device is None:
            return SinkResult(
                delivered=False,
                error="not sent: the device was deleted first; a Request Sync tells Google",
                permanent=True,
            )
        if item.event_type == "button.pressed":
            return await self._notify(item, device)
        if item.event_type == "state.changed":
            return await self._report(item, device, key)
        return SinkResult(
            delivered=False,
            error=f"not sent: nothing to tell Google of {item.event_type}",
            permanent=True,
        )

    # messages ------------------------------------------------------------------------------
    async def _report(self, item: OutboxItem, device: Device, key: tuple[str, str]) -> SinkResult:
        prop = item.payload.get("property")
        version = _version(item)
        sent = self._sent.get(key) or _Sent()
        if is_routine_trigger(device.type, device.options, prop):
            # Every transition of a trigger, with the value it had: automations start on it.
            overrides = {str(prop): item.payload.get("new")} if "new" in item.payload else {}
            report = states(device, overrides)
            settle_version = version
        else:
            if version <= sent.version:
                return SinkResult.merged(sent.event or item.event_id)
            report = states(device)
            settle_version = device.version
        if not report:
            return SinkResult(
                delivered=False, error="not sent: the device has no state yet", permanent=True
            )
        body: JSON = {
            "requestId": str(uuid.uuid4()),
            "agentUserId": item.destination,
            "eventId": item.event_id,
            "payload": {"devices": {"states": {device.id: report}}},
        }
        result = await self._call("report", item, REPORT_PATH, body, REPORT_TIMEOUT)
        if result.delivered:
            known = self._sent.setdefault(key, _Sent())
            if settle_version >= known.version:
                known.version, known.event = settle_version, item.event_id
        return result

    async def _notify(self, item: OutboxItem, device: Device) -> SinkResult:
        if device.type != "button":
            return SinkResult(
                delivered=False, error="not sent: the device is not a button", permanent=True
            )
        at = _at(item)
        if self._core.clock() - at > NOTIFICATION_MAX_AGE:
            return SinkResult(
                delivered=False,
                error=f"not sent: Google announces a doorbell press only within"
                f" {NOTIFICATION_MAX_AGE:.0f} s",
                permanent=True,
            )
        body: JSON = {
            "requestId": str(uuid.uuid4()),
            "agentUserId": item.destination,
            "eventId": item.event_id,
            "payload": {
                "devices": {
                    "notifications": {
                        device.id: {
                            "ObjectDetection": {
                                "objects": {"unclassified": 1},
                                "priority": 0,
                                "detectionTimestamp": int(at * 1000),
                            }
                        }
                    }
                }
            },
        }
        return await self._call("report", item, REPORT_PATH, body, REPORT_TIMEOUT)

    async def _request_sync(self, item: OutboxItem) -> SinkResult:
        user = (item.tenant_id, item.destination)
        synced = self._synced.get(user)
        if synced is not None and synced[0] > item.created_at:
            return SinkResult.merged(synced[1])
        started = self._core.clock()
        body: JSON = {"agentUserId": item.destination, "async": False}
        result = await self._call("sync", item, SYNC_PATH, body, SYNC_TIMEOUT)
        if result.delivered:
            self._synced[user] = (started, item.event_id)
        return result

    # sending -------------------------------------------------------------------------------
    async def _call(
        self,
        kind: str,
        item: OutboxItem,
        path: str,
        body: JSON,
        wait: aiohttp.ClientTimeout,
    ) -> SinkResult:
        """One Home Graph call with its outcome counted, noted and acted on (404: gone)."""
        result = await self._post(path, body, wait)
        if result.status_code == 404:
            if kind == "report":
                # Google does not know the user, or not this device yet: a SYNC first.
                synced = await self._post(
                    SYNC_PATH, {"agentUserId": item.destination}, SYNC_TIMEOUT
                )
                if synced.status_code != 404:
                    if synced.delivered:
                        self._synced[(item.tenant_id, item.destination)] = (
                            self._core.clock(),
                            item.event_id,
                        )
                    result = SinkResult(
                        delivered=False,
                        status_code=404,
                        error=f"{result.error}; asked Google to SYNC, trying again",
                    )
            if result.permanent:
                await self._links.end(item.tenant_id, item.destination, UNKNOWN_TO_GOOGLE)
                self._forget(item.tenant_id, item.destination)
                self.counters.count(kind, "gone")
                return SinkResult(
                    delivered=False,
                    status_code=404,
                    error=f"{result.error}: Google no longer knows this user; link ended",
                    permanent=True,
                )
        outcome = "accepted" if result.delivered else "failed" if result.permanent else "retry"
        self.counters.count(kind, outcome)
        self._links.note(
            item.tenant_id,
            item.destination,
            kind=kind,
            accepted=result.delivered,
            status_code=result.status_code,
            error=result.error,
        )
        return result

    async def _post(self, path: str, body: JSON, wait: aiohttp.ClientTimeout) -> SinkResult:
        """POST with the service account's token, made again once after a 401."""
        stale: str | None = None
        for _ in range(2):
            try:
                token = await self._token.get(stale=stale)
            except KeyFileError as exc:
                return SinkResult(delivered=False, error=f"not sent: {exc}")
            except TokenError as exc:
                return SinkResult(delivered=False, error=f"not sent: {exc}")
            result = await self._send(path, body, token, wait)
            if result.status_code != 401:
                return result
            stale = token
        return result

    async def _send(
        self, path: str, body: JSON, token: str, wait: aiohttp.ClientTimeout
    ) -> SinkResult:
        try:
            async with self._session().post(
                self._base + path,
                data=json.dumps(body, separators=(",", ":")),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=wait,
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES)
                status = response.status
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self._core.clock()
                )
        except TimeoutError:
            return SinkResult(delivered=False, error="Home Graph timed out")
        except aiohttp.ClientError as exc:
            return SinkResult(
                delivered=False, error=f"Home Graph unreachable: {type(exc).__name__}"
            )
        if 200 <= status < 300:
            return SinkResult(delivered=True, status_code=status)
        code = error_code(raw, "error", "status")
        error = f"Home Graph {status} {code}" if code else f"Home Graph {status}"
        if status == 429 or status >= 500:
            return SinkResult(
                delivered=False, status_code=status, error=error, retry_after=retry_after
            )
        if status == 401:
            return SinkResult(delivered=False, status_code=status, error=error)
        # 400 (a payload Google refuses), 403 (API off or another project), 404: final.
        return SinkResult(delivered=False, status_code=status, error=error, permanent=True)

    def _forget(self, tenant_id: str, user_id: str) -> None:
        for key in [key for key in self._sent if key[0] == user_id]:
            del self._sent[key]
        self._synced.pop((tenant_id, user_id), None)


def _version(item: OutboxItem) -> int:
    version = item.payload.get("device_version")
    return version if isinstance(version, int) and not isinstance(version, bool) else 1 << 62


def _at(item: OutboxItem) -> float:
    at = item.payload.get("at")
    return float(at) if isinstance(at, int | float) else item.created_at
