"""Form validation messages shown next to their fields."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from staterelay.browser.forms import field_errors
from staterelay.core.errors import Conflict, InvalidInput

MISMATCH: Final = "The two passwords are not the same."


def confirm_errors(form: Mapping[str, str], field: str = "password") -> dict[str, str]:
    """A message on ``confirm_<field>`` when it differs from ``field``."""
    if form.get(field, "") != form.get(f"confirm_{field}", ""):
        return {f"confirm_{field}": MISMATCH}
    return {}


# API field names as the dashboard's forms label them.
FIELD_LABELS: Final = {
    "ifttt_webhooks": "IFTTT Webhooks",
    "ifttt_event": "IFTTT event name",
    "ifttt_key": "IFTTT Webhooks key",
    "device_ids": "the devices",
    "event_types": "the events",
    "url": "URL",
}
_FIELD_WORDS: Final = re.compile(r"\b(" + "|".join(map(re.escape, FIELD_LABELS)) + r")\b")


def human_errors(error: InvalidInput | Conflict) -> dict[str, str]:
    """Like ``field_errors``, with API field names replaced by the form's labels."""
    text = _FIELD_WORDS.sub(lambda m: FIELD_LABELS[m.group(1)], error.detail)
    return field_errors(type(error)(text, field=(error.field or "form").split(".")[0]))
