"""Webhook body formats: Standard Webhooks events, or IFTTT's Webhooks ("Maker") trigger.

An ``ifttt_webhooks`` webhook starts an IFTTT Applet without a private IFTTT service: each
event is POSTed to ``{url}/trigger/{event}/with/key/{key}`` (``url`` defaults to
``https://maker.ifttt.com``) as ``value1`` = device name, ``value2`` = property (or what
happened) and ``value3`` = the new value, the three ingredients IFTTT's trigger offers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from staterelay.core.crypto import SecretBox
from staterelay.core.errors import InvalidInput
from staterelay.core.ifttt_catalog import number_text
from staterelay.core.records import Webhook

STANDARD: Final = "standard"
IFTTT_WEBHOOKS: Final = "ifttt_webhooks"
FORMATS: Final = (STANDARD, IFTTT_WEBHOOKS)
MAKER_URL: Final = "https://maker.ifttt.com"
EVENT_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,64}")
MAKER_KEY: Final = re.compile(r"[A-Za-z0-9_-]{8,128}")


def validate_format(value: Any) -> str:
    """``standard`` or ``ifttt_webhooks``."""
    if value not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
    return str(value)


def validate_event_name(value: Any) -> str:
    """An IFTTT Webhooks event name: letters, digits and underscores."""
    if not isinstance(value, str) or not EVENT_NAME.fullmatch(value):
        raise InvalidInput(
            "ifttt_event must be 1 to 64 letters, digits or underscores", field="ifttt_event"
        )
    return value


def validate_maker_key(value: Any) -> str:
    """The key from IFTTT's Webhooks settings page (the end of ``maker.ifttt.com/use/...``)."""
    if not isinstance(value, str) or not MAKER_KEY.fullmatch(value.strip()):
        raise InvalidInput(
            "ifttt_key must be the key shown on IFTTT's Webhooks settings page",
            field="ifttt_key",
        )
    return value.strip()


def format_changes(
    fields: Mapping[str, Any], current: Webhook | None, box: SecretBox
) -> dict[str, Any]:
    """The ``format``, ``ifttt_event`` and encrypted key that a create or update sets."""
    fmt = current.format if current is not None else STANDARD
    changes: dict[str, Any] = {}
    if "format" in fields:
        fmt = changes["format"] = validate_format(fields["format"])
    if fmt == STANDARD:
        if fields.get("ifttt_event") is not None or fields.get("ifttt_key") is not None:
            raise InvalidInput(
                "ifttt_event and ifttt_key are for webhooks of format ifttt_webhooks",
                field="format",
            )
        if current is not None and current.format != STANDARD:
            changes.update(ifttt_event=None, ifttt_key_ciphertext=None)
        return changes
    if fields.get("ifttt_event") is not None:
        changes["ifttt_event"] = validate_event_name(fields["ifttt_event"])
    if fields.get("ifttt_key") is not None:
        changes["ifttt_key_ciphertext"] = box.encrypt(validate_maker_key(fields["ifttt_key"]))
    if not changes.get("ifttt_event", current.ifttt_event if current else None):
        raise InvalidInput("an ifttt_webhooks webhook needs ifttt_event", field="ifttt_event")
    if not changes.get("ifttt_key_ciphertext", current.ifttt_key_ciphertext if current else None):
        raise InvalidInput("an ifttt_webhooks webhook needs ifttt_key", field="ifttt_key")
    return changes


def maker_values(event_type: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """``value1``-``value3`` of an event: device name, property, new value."""
    device = payload.get("device")
    name = str(device.get("name") or "") if isinstance(device, Mapping) else ""
    if event_type == "state.changed":
        what, value = str(payload.get("property") or ""), number_text(payload.get("new"))
    elif event_type == "button.pressed":
        what, value = "pressed", str(payload.get("timestamp") or "")
    elif event_type == "webhook.test":
        name, what, value = "StateRelay", "test", str(payload.get("message") or "")
    else:
        what, value = event_type, ""
    return {"value1": name, "value2": what, "value3": value}


def maker_request(
    webhook: Webhook, key: str, event_type: str, payload: Mapping[str, Any]
) -> tuple[str, bytes]:
    """The URL (which holds the key: never log it) and JSON body of one Webhooks trigger."""
    base = webhook.url.rstrip("/")
    url = f"{base}/trigger/{quote(webhook.ifttt_event or '', safe='')}/with/key/{quote(key)}"
    body = json.dumps(maker_values(event_type, payload), ensure_ascii=False).encode("utf-8")
    return url, body
