"""WebhookSink: signed POSTs to users' webhook endpoints, through the SSRF guard."""

from __future__ import annotations

import logging
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from staterelay import __version__
from staterelay.app.http import OutgoingHttp
from staterelay.app.ssrf import AddressRefused, check_url
from staterelay.core import Core
from staterelay.core.netpolicy import AddressPolicy
from staterelay.core.records import OutboxItem
from staterelay.core.sinks import SinkResult, parse_retry_after
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS
from staterelay.integrations.webhooks.signing import event_body, signature_headers

_LOGGER = logging.getLogger(__name__)

USER_AGENT: Final = f"StateRelay-Webhooks/{__version__}"
CONNECT_TIMEOUT: Final = 10.0
THROTTLING: Final = frozenset({429, 503})
GONE: Final = 410


class WebhookSink:
    """Deliver ``webhook`` outbox rows as Standard Webhooks requests.

    One attempt is one POST: no redirects are followed, no proxy or cookie is used, the
    answer's body is read up to ``max_response_bytes`` and thrown away, and only a 2xx
    status counts as delivered. A 410 answer switches the webhook off for good.

    Requests go through ``http.guarded()``, the application's SSRF-guarded session. Without
    ``http`` (a sink used on its own, as tests do) the sink keeps a client of its own,
    guarded by ``policy`` and resolving with ``resolver``, and closes it with itself.
    """

    name = "webhook"

    def __init__(
        self,
        core: Core,
        *,
        timeout_seconds: float,
        max_response_bytes: int,
        policy: AddressPolicy,
        resolver: AbstractResolver | None = None,
        http: OutgoingHttp | None = None,
    ) -> None:
        self._core = core
        self._timeout_seconds = timeout_seconds
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, connect=min(timeout_seconds, CONNECT_TIMEOUT)
        )
        self._max_response_bytes = max(0, max_response_bytes)
        self._policy = policy
        self._own_http = http is None
        self._http = http or OutgoingHttp(policy, resolver=resolver)
        self._closed = False

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """POST one signed event to its webhook and report the answer."""
        if self._closed:
            return SinkResult(delivered=False, error="not sent: the server is shutting down")
        target = await self._core.webhooks.target(item.tenant_id, item.destination)
        if target is None:
            return SinkResult(
                delivered=False, error="not sent: the webhook no longer exists", permanent=True
            )
        webhook, secret = target
        if not webhook.enabled:
            return SinkResult(
                delivered=False, error="not sent: the webhook is disabled", permanent=True
            )
        try:
            url = URL(webhook.url)
            if url.scheme not in ("http", "https"):
                raise ValueError(url.scheme)
            check_url(url, self._policy)
        except AddressRefused as exc:
            return SinkResult(delivered=False, error=str(exc))
        except ValueError:
            return SinkResult(delivered=False, error="not sent: the webhook URL is not valid")
        now = self._core.clock()
        headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
        }
        try:
            if webhook.format == IFTTT_WEBHOOKS:
                # IFTTT's Webhooks trigger: value1-value3 to a URL holding the user's key.
                maker = self._core.webhooks.maker_request(webhook, item.event_type, item.payload)
                if maker is None:
                    return SinkResult(
                        delivered=False,
                        error="not sent: the IFTTT event name or key is missing",
                        permanent=True,
                    )
                url, body = URL(maker[0], encoded=True), maker[1]
            else:
                body = event_body(item.event_id, item.event_type, item.payload)
                headers.update(signature_headers(secret, item.event_id, int(now), body))
        except ValueError:
            return SinkResult(
                delivered=False, error="not sent: the event cannot be encoded", permanent=True
            )
        try:
            async with self._http.guarded().post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = (
                    parse_retry_after(response.headers.get("Retry-After"), now)
                    if status in THROTTLING
                    else None
                )
                await self._discard_body(response)
        except TimeoutError as exc:
            return SinkResult(delivered=False, error=self._describe_timeout(exc))
        except aiohttp.ClientError as exc:
            return SinkResult(delivered=False, error=describe_client_error(exc))
        except OSError as exc:
            return SinkResult(delivered=False, error=f"connection failed: {_os_reason(exc)}")
        return await self._judge(item, status, retry_after)

    async def close(self) -> None:
        """Take no more deliveries; close the client if it is the sink's own."""
        self._closed = True
        if self._own_http:
            await self._http.close()

    async def _judge(self, item: OutboxItem, status: int, retry_after: float | None) -> SinkResult:
        if 200 <= status < 300:
            return SinkResult(delivered=True, status_code=status)
        if status == GONE:
            await self._core.webhooks.disable(
                item.tenant_id, item.destination, "the receiver answered 410 Gone"
            )
            _LOGGER.warning("webhook %s answered 410 Gone; disabled it", item.destination)
            return SinkResult(
                delivered=False,
                status_code=status,
                error="the receiver answered 410 Gone; the webhook is now disabled",
                permanent=True,
            )
        if 300 <= status < 400:
            return SinkResult(
                delivered=False,
                status_code=status,
                error=f"redirect ({status}) not followed; give the webhook its final URL",
            )
        return SinkResult(
            delivered=False,
            status_code=status,
            error=f"the receiver answered {status}",
            retry_after=retry_after,
        )

    async def _discard_body(self, response: aiohttp.ClientResponse) -> None:
        """Read at most the cap and drop it; past the cap the connection is closed, not reused."""
        remaining = self._max_response_bytes
        try:
            while True:
                chunk = await response.content.read(remaining + 1)
                if not chunk:
                    return
                remaining -= len(chunk)
                if remaining < 0:
                    response.close()
                    return
        except (aiohttp.ClientError, TimeoutError, OSError):
            # The status line decided the outcome already; a broken body changes nothing.
            response.close()

    def _describe_timeout(self, exc: TimeoutError) -> str:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"timed out connecting after {min(self._timeout_seconds, CONNECT_TIMEOUT):g} s"
        return f"timed out: no answer within {self._timeout_seconds:g} s"


def describe_client_error(exc: aiohttp.ClientError) -> str:
    """A short, secret-free account of a failed request (never the URL, which may hold tokens)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, AddressRefused):
            return str(exc.os_error)
        return "DNS lookup failed: the host name was not found"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS failed: the receiver's certificate is not trusted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection failed: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering"
    if isinstance(exc, aiohttp.InvalidURL):
        return "not sent: the webhook URL is not valid"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return "the receiver sent an invalid HTTP response"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection failed: {_os_reason(exc)}"
    return f"request failed ({type(exc).__name__})"


def _os_reason(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


__all__ = ["USER_AGENT", "WebhookSink", "describe_client_error"]
