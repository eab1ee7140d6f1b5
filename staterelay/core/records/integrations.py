"""Integration records: what an integration keeps per household, as core hands it around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

LINK_KIND: Final = "link"
"""The kind of record that is an integration link: the interest facts list these by key."""


@dataclass(frozen=True, slots=True)
class IntegrationRecord:
    """One record: a household's, of one integration, of one kind, under one key.

    ``data`` is the integration's own JSON object; core and the store never look inside.
    """

    tenant_id: str
    integration: str
    kind: str
    key: str
    data: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
