"""Form validation messages shown next to their fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from staterelay.errors import Conflict, InvalidInput

MISMATCH: Final = "The two passwords are not the same."


def field_errors(error: InvalidInput | Conflict) -> dict[str, str]:
    """A domain error as a sentence next to its form field (``form`` when it names none)."""
    detail = error.detail[:1].upper() + error.detail[1:]
    return {error.field or "form": detail if detail.endswith(".") else detail + "."}


def confirm_errors(form: Mapping[str, str], field: str = "password") -> dict[str, str]:
    """A message on ``confirm_<field>`` when it differs from ``field``."""
    if form.get(field, "") != form.get(f"confirm_{field}", ""):
        return {f"confirm_{field}": MISMATCH}
    return {}
