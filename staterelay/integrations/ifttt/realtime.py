"""IftttRealtimeSink: tells IFTTT's Realtime API which trigger identities to poll now.

The fan-out keeps at most one waiting ``ifttt`` outbox row per device, due at the end of a
debounce window that is the same for every device, so rows fall due together. This sink
gathers the rows the dispatcher hands it within ``gather_seconds`` into one request of up to
1,000 identities (deduplicated), and reports that request's outcome for every row in it;
failed rows are retried by the dispatcher like any other, and each attempt is logged.
A notification only asks IFTTT to poll, so one older than ``max_age_seconds`` is dropped:
IFTTT has polled on its own schedule since.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterable
from typing import Final

import aiohttp

from staterelay import __version__
from staterelay.app.http import OutgoingHttp
from staterelay.core.clock import Clock
from staterelay.core.ifttt import REALTIME_BATCH, REALTIME_SINK
from staterelay.core.records import OutboxItem
from staterelay.core.sinks import SinkResult, parse_retry_after

_LOGGER = logging.getLogger(__name__)

USER_AGENT: Final = f"StateRelay-IFTTT/{__version__}"
THROTTLING: Final = frozenset({429, 503})
MAX_ANSWER_BYTES: Final = 65536


class _Batch:
    """Identities gathered for one request, and the outcome every row in it waits for."""

    __slots__ = ("identities", "outcome", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.identities: dict[str, None] = {}
        self.outcome: asyncio.Future[SinkResult] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None


class IftttRealtimeSink:
    """Deliver ``ifttt`` outbox rows as batched Realtime notifications.

    Requests go through ``http.shared()``, the application's client; without ``http`` (a
    sink used on its own, as tests do) the sink keeps a client of its own and closes it.
    """

    name = REALTIME_SINK

    def __init__(
        self,
        *,
        url: str,
        service_key: str | None,
        clock: Clock,
        gather_seconds: float = 0.02,
        timeout_seconds: float = 10.0,
        max_age_seconds: float = 3600.0,
        http: OutgoingHttp | None = None,
    ) -> None:
        self._url = url
        self._key = (service_key or "").strip() or None
        self._clock = clock
        self._gather = gather_seconds
        self._timeout = timeout_seconds
        self._max_age = max_age_seconds
        self._batch: _Batch | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._own_http = http is None
        self._http = http or OutgoingHttp()
        self._closed = False

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """Add the row's identities to the open batch and report how its request went."""
        if self._closed:
            return SinkResult(delivered=False, error="not sent: the server is shutting down")
        if self._key is None:
            return SinkResult(
                delivered=False, error="not sent: ifttt.service_key is not set", permanent=True
            )
        if self._clock() - item.created_at > self._max_age:
            return SinkResult(
                delivered=False,
                error="not sent: the notification is stale; IFTTT has polled since",
                permanent=True,
            )
        raw = item.payload.get("trigger_identities")
        identities = [i for i in raw if isinstance(i, str)] if isinstance(raw, list) else []
        if not identities:
            return SinkResult(
                delivered=False, error="not sent: no trigger identity to notify", permanent=True
            )
        batch = self._join(identities)
        # Shielded: a row cancelled at shutdown must not cancel its neighbours' request.
        return await asyncio.shield(batch.outcome)

    async def close(self) -> None:
        """Send what is gathered, wait for requests in flight, close an own client."""
        self._closed = True
        self._flush()
        if self._sending:
            await asyncio.wait(tuple(self._sending), timeout=self._timeout)
        if self._own_http:
            await self._http.close()

    def _join(self, identities: Iterable[str]) -> _Batch:
        wanted = dict.fromkeys(identities)
        batch = self._batch
        if batch is not None and len(batch.identities.keys() | wanted.keys()) > REALTIME_BATCH:
            self._flush()
            batch = None
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = _Batch(loop)
            batch.timer = loop.call_later(self._gather, self._flush)
        batch.identities.update(wanted)
        if len(batch.identities) >= REALTIME_BATCH:
            self._flush()
        return batch

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._send(batch), name="ifttt-realtime")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _Batch) -> None:
        try:
            result = await self._post(list(batch.identities))
        except Exception:
            _LOGGER.exception("sending an IFTTT Realtime notification failed")
            result = SinkResult(delivered=False, error="internal error while sending")
        if not batch.outcome.done():
            batch.outcome.set_result(result)

    async def _post(self, identities: list[str]) -> SinkResult:
        assert self._key is not None
        request_id = uuid.uuid4().hex
        body = json.dumps({"data": [{"trigger_identity": i} for i in identities]})
        headers = {
            "IFTTT-Service-Key": self._key,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Request-ID": request_id,
            "User-Agent": USER_AGENT,
        }
        try:
            async with self._http.shared().post(
                self._url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = (
                    parse_retry_after(response.headers.get("Retry-After"), self._clock())
                    if status in THROTTLING
                    else None
                )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    await response.content.read(MAX_ANSWER_BYTES)
        except TimeoutError:
            return SinkResult(
                delivered=False, error=f"IFTTT did not answer within {self._timeout:g} s"
            )
        except aiohttp.ClientConnectorError as exc:
            reason = (exc.os_error.strerror or type(exc.os_error).__name__).lower()
            return SinkResult(delivered=False, error=f"connection to IFTTT failed: {reason}")
        except (aiohttp.ClientError, OSError) as exc:
            return SinkResult(
                delivered=False, error=f"request to IFTTT failed ({type(exc).__name__})"
            )
        _LOGGER.debug(
            "IFTTT Realtime %s: %d identities, answered %d", request_id, len(identities), status
        )
        if 200 <= status < 300:
            return SinkResult(delivered=True, status_code=status)
        if status in (401, 403):
            error = f"IFTTT refused the service key ({status}); check ifttt.service_key"
        else:
            error = f"IFTTT answered {status}"
        return SinkResult(delivered=False, status_code=status, error=error, retry_after=retry_after)


__all__ = ["IftttRealtimeSink"]
