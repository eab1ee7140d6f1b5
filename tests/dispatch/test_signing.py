"""Standard Webhooks signing, checked against the reference ``standardwebhooks`` library."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook as StandardWebhook, WebhookVerificationError

from staterelay.core.webhooks import new_signing_secret
from staterelay.integrations.webhooks import event_body, sign, signature_headers

PAYLOAD = {
    "device": {"id": "dev_1", "name": "Hall lamp ☀", "type": "switch"},
    "property": "power",
    "old": "OFF",
    "new": "ON",
    "cause": None,
    "source": "api",
    "version": 2,
    "timestamp": "2026-11-25T21:46:56.123Z",
}


def test_body_is_compact_sorted_utf8_and_stable() -> None:
    """The body is the same bytes every time, with id and type beside the payload fields."""
    body = event_body("msg_1", "state.changed", PAYLOAD)
    assert body == event_body("msg_1", "state.changed", dict(reversed(PAYLOAD.items())))
    assert b" " not in body.replace("Hall lamp ☀".encode(), b"")
    assert "☀".encode() in body
    document = json.loads(body)
    assert document == {**PAYLOAD, "id": "msg_1", "type": "state.changed"}
    assert list(document) == sorted(document)


def test_id_and_type_cannot_be_overridden_by_the_payload() -> None:
    """A payload field named id or type never replaces the event's own."""
    document = json.loads(event_body("msg_1", "state.changed", {"id": "x", "type": "y"}))
    assert document == {"id": "msg_1", "type": "state.changed"}


def test_non_finite_numbers_are_refused() -> None:
    """NaN is not JSON; encoding it fails instead of sending something receivers reject."""
    with pytest.raises(ValueError, match="JSON"):
        event_body("msg_1", "state.changed", {"new": float("nan")})


def test_reference_library_verifies_our_headers() -> None:
    """``standardwebhooks`` accepts the body with our headers and refuses a tampered body."""
    secret = new_signing_secret()
    body = event_body("msg_abc", "state.changed", PAYLOAD)
    headers = signature_headers(secret, "msg_abc", int(time.time()), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    verified = StandardWebhook(secret).verify(body, headers)
    assert verified["id"] == "msg_abc"
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(secret).verify(body.replace(b'"ON"', b'"OFF"'), headers)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(new_signing_secret()).verify(body, headers)


def test_signature_matches_the_reference_signer() -> None:
    """Our signature string is byte-for-byte the library's."""
    secret = new_signing_secret()
    body = event_body("msg_abc", "button.pressed", {"source": "ui"})
    ts = 1_764_107_216
    expected = StandardWebhook(secret).sign(
        "msg_abc", datetime.fromtimestamp(ts, tz=UTC), body.decode()
    )
    assert sign(secret, "msg_abc", ts, body) == expected
