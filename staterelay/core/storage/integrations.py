"""The integration records part of the store interface: a generic per-household key space.

An integration keeps small JSON records here (link state, last results) instead of tables of
its own. Records of kind ``link`` (``LINK_KIND``) are also the integration links of the
household's interest facts; adding or removing one moves its ``interest_version``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from staterelay.core.records.integrations import IntegrationRecord


class IntegrationRecordStore(Protocol):
    """Persistence for integration records."""

    async def put_integration_record(
        self,
        tenant_id: str,
        integration: str,
        kind: str,
        key: str,
        data: Mapping[str, Any],
        now: float,
    ) -> IntegrationRecord:
        """Insert the record or replace its data (its ``created_at`` stays)."""

    async def merge_integration_record(
        self,
        tenant_id: str,
        integration: str,
        kind: str,
        key: str,
        changes: Mapping[str, Any],
        now: float,
    ) -> bool:
        """Set top-level keys of an existing record's data; False when there is no record."""

    async def get_integration_record(
        self, tenant_id: str, integration: str, kind: str, key: str
    ) -> IntegrationRecord | None:
        """One record, or None."""

    async def list_integration_records(
        self, tenant_id: str, integration: str, kind: str
    ) -> Sequence[IntegrationRecord]:
        """A household's records of one integration and kind, by key."""

    async def delete_integration_record(
        self,
        tenant_id: str,
        integration: str,
        kind: str,
        key: str,
        *,
        pending_sink: str | None = None,
    ) -> bool:
        """Delete a record; with ``pending_sink``, in the same transaction the household's
        pending outbox rows of that sink addressed to ``key`` are dropped. False when there
        was no record."""
