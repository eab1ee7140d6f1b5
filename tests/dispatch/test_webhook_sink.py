"""WebhookSink against real receivers on loopback: one attempt, judged strictly."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from staterelay.core import Core
from staterelay.core.records import OutboxItem, Principal, Webhook
from staterelay.integrations.webhooks import WebhookSink
from staterelay.integrations.webhooks.sink import USER_AGENT
from tests.dispatch.conftest import HookFactory, Receiver
from tests.processes import free_port


@pytest.fixture
async def sink(core: Core) -> AsyncIterator[WebhookSink]:
    """A sink with a short timeout and a 64 KiB response cap, allowing loopback."""
    webhook_sink = WebhookSink(
        core, timeout_seconds=0.5, max_response_bytes=65536, policy=core.webhooks.policy
    )
    yield webhook_sink
    await webhook_sink.close()


def item_for(webhook: Webhook, *, attempts: int = 0) -> OutboxItem:
    """An outbox row for ``webhook``."""
    return OutboxItem(
        id=1,
        tenant_id=webhook.tenant_id,
        sink="webhook",
        destination=webhook.id,
        event_id="msg_sinktest",
        event_type="state.changed",
        device_id="dev_x",
        payload={"device": {"id": "dev_x", "name": "X", "type": "switch"}, "new": "ON"},
        attempts=attempts,
        created_at=time.time(),
    )


async def test_2xx_is_delivered_with_our_headers(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """A 204 is a delivery; the request is a signed JSON POST without cookies or proxies."""
    webhook, _ = await make_hook(receiver.url())
    result = await sink.deliver(item_for(webhook))
    assert result.delivered
    assert result.status_code == 204
    assert result.error is None
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["webhook-id"] == "msg_sinktest"
    assert "Cookie" not in request.headers


@pytest.mark.parametrize("status", [500, 400, 404, 401])
async def test_other_statuses_fail_and_may_be_retried(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver, status: int
) -> None:
    """Anything but 2xx is a failure worth retrying (except 410)."""
    receiver.default = status
    webhook, _ = await make_hook(receiver.url())
    result = await sink.deliver(item_for(webhook))
    assert not result.delivered
    assert not result.permanent
    assert result.status_code == status
    assert result.error == f"the receiver answered {status}"
    assert result.retry_after is None


async def test_redirect_is_a_failure_and_not_followed(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """A 302 to another loopback path fails the attempt; the target is never requested."""
    webhook, _ = await make_hook(receiver.url("/redirect"))
    result = await sink.deliver(item_for(webhook))
    assert not result.delivered
    assert result.status_code == 302
    assert result.error is not None
    assert "redirect" in result.error
    assert [r.path for r in receiver.requests] == ["/redirect"]
    assert receiver.at("/landing") == []


async def test_hanging_receiver_is_abandoned_after_the_timeout(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """A receiver that never answers costs one timeout, then the attempt fails."""
    webhook, _ = await make_hook(receiver.url("/hang"))
    started = time.monotonic()
    result = await sink.deliver(item_for(webhook))
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.0
    assert not result.delivered
    assert result.status_code is None
    assert result.error == "timed out: no answer within 0.5 s"


async def test_huge_body_is_cut_off_at_the_cap(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """A 20 MB answer is read to 64 KiB and dropped: quick, small, and still a delivery."""
    webhook, _ = await make_hook(receiver.url("/big"))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        started = time.monotonic()
        result = await sink.deliver(item_for(webhook))
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.delivered
    assert result.status_code == 200
    assert elapsed < 0.5  # well inside the timeout: the cap, not the clock, ended it
    assert peak < 4 * 1024 * 1024
    assert receiver.big_sent < receiver.big_bytes


async def test_dripping_body_is_abandoned_at_the_timeout(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """A 200 whose body trickles forever is still a delivery, ended by the total timeout."""
    webhook, _ = await make_hook(receiver.url("/drip"))
    started = time.monotonic()
    result = await sink.deliver(item_for(webhook))
    assert time.monotonic() - started < 1.5
    assert result.delivered
    assert result.status_code == 200


async def test_zero_cap_stops_at_the_first_byte(
    core: Core, make_hook: HookFactory, receiver: Receiver
) -> None:
    """With no body allowed at all the first byte ends the read."""
    sink = WebhookSink(core, timeout_seconds=0.5, max_response_bytes=0, policy=core.webhooks.policy)
    try:
        webhook, _ = await make_hook(receiver.url("/big"))
        result = await sink.deliver(item_for(webhook))
    finally:
        await sink.close()
    assert result.delivered
    assert receiver.big_sent < receiver.big_bytes


async def test_410_disables_the_webhook_for_good(
    sink: WebhookSink,
    core: Core,
    principal: Principal,
    make_hook: HookFactory,
    receiver: Receiver,
) -> None:
    """410 Gone is permanent and switches the webhook off with a reason."""
    webhook, _ = await make_hook(receiver.url("/gone"))
    result = await sink.deliver(item_for(webhook))
    assert not result.delivered
    assert result.permanent
    assert result.status_code == 410
    stored = await core.webhooks.get(principal, webhook.id)
    assert not stored.enabled
    assert stored.disabled_reason == "the receiver answered 410 Gone"


async def test_429_carries_retry_after(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """A throttling answer hands its Retry-After on to the dispatcher."""
    webhook, _ = await make_hook(receiver.url("/busy"))
    result = await sink.deliver(item_for(webhook))
    assert not result.delivered
    assert result.status_code == 429
    assert result.retry_after == 120.0


async def test_deleted_or_disabled_webhook_is_not_requested(
    sink: WebhookSink,
    core: Core,
    principal: Principal,
    make_hook: HookFactory,
    receiver: Receiver,
) -> None:
    """No request goes out for a webhook that is gone or switched off; the row is dead."""
    deleted, _ = await make_hook(receiver.url())
    await core.webhooks.delete(principal, deleted.id)
    gone = await sink.deliver(item_for(deleted))
    assert (gone.delivered, gone.permanent, gone.status_code) == (False, True, None)
    assert gone.error == "not sent: the webhook no longer exists"

    disabled, _ = await make_hook(receiver.url())
    await core.webhooks.update(principal, disabled.id, {"enabled": False})
    off = await sink.deliver(item_for(disabled))
    assert (off.delivered, off.permanent) == (False, True)
    assert off.error == "not sent: the webhook is disabled"
    assert receiver.requests == []


async def test_connection_refused_is_reported_without_url_or_secret(
    sink: WebhookSink, make_hook: HookFactory
) -> None:
    """A closed port fails the attempt; the error names neither the URL's path nor the secret."""
    webhook, secret = await make_hook(f"http://127.0.0.1:{free_port()}/api/webhook/s3cr3t-path")
    result = await sink.deliver(item_for(webhook))
    assert not result.delivered
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("connection failed")
    assert "s3cr3t-path" not in result.error
    assert secret not in result.error
    assert secret.removeprefix("whsec_") not in result.error


async def test_closed_sink_sends_nothing(
    sink: WebhookSink, make_hook: HookFactory, receiver: Receiver
) -> None:
    """After close() the sink refuses politely instead of reopening a session."""
    webhook, _ = await make_hook(receiver.url())
    await sink.close()
    result = await sink.deliver(item_for(webhook))
    assert not result.delivered
    assert receiver.requests == []
