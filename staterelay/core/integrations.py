"""Integration records: the generic per-household key space integrations keep state in.

Integrations reach the store only through core; this service stamps records with core's
clock. A record of kind ``link`` is an integration link: the interest facts list the
household's links per integration, so a link added or ended reaches the delivery policies
with the next change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from staterelay.core.clock import Clock
from staterelay.core.records import Device
from staterelay.core.records.integrations import LINK_KIND, IntegrationRecord
from staterelay.core.storage import Store


class IntegrationRecords:
    """Reads and writes integration records for any integration."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def put(
        self, tenant_id: str, integration: str, kind: str, key: str, data: Mapping[str, Any]
    ) -> IntegrationRecord:
        """Insert or replace a record's data."""
        return await self._store.put_integration_record(
            tenant_id, integration, kind, key, data, self._clock()
        )

    async def merge(
        self, tenant_id: str, integration: str, kind: str, key: str, changes: Mapping[str, Any]
    ) -> bool:
        """Set top-level keys of a record's data; False when there is no such record."""
        return await self._store.merge_integration_record(
            tenant_id, integration, kind, key, changes, self._clock()
        )

    async def get(
        self, tenant_id: str, integration: str, kind: str, key: str
    ) -> IntegrationRecord | None:
        """One record, or None."""
        return await self._store.get_integration_record(tenant_id, integration, kind, key)

    async def list(
        self, tenant_id: str, integration: str, kind: str
    ) -> Sequence[IntegrationRecord]:
        """A household's records of one integration and kind."""
        return await self._store.list_integration_records(tenant_id, integration, kind)

    async def delete(
        self,
        tenant_id: str,
        integration: str,
        kind: str,
        key: str,
        *,
        pending_sink: str | None = None,
    ) -> bool:
        """Delete a record (and the pending rows of ``pending_sink`` addressed to its key)."""
        return await self._store.delete_integration_record(
            tenant_id, integration, kind, key, pending_sink=pending_sink
        )

    async def device(self, tenant_id: str, device_id: str) -> Device | None:
        """A device of the household as it is now, for a sink building what it sends; None
        once deleted."""
        return await self._store.get_device(tenant_id, device_id)

    async def link(
        self, tenant_id: str, integration: str, key: str, data: Mapping[str, Any]
    ) -> IntegrationRecord:
        """Record (or refresh) an integration link; the policies hear of it from now on."""
        return await self.put(tenant_id, integration, LINK_KIND, key, data)

    async def link_of(self, tenant_id: str, integration: str, key: str) -> IntegrationRecord | None:
        """An integration link, or None."""
        return await self.get(tenant_id, integration, LINK_KIND, key)

    async def unlink(
        self, tenant_id: str, integration: str, key: str, *, pending_sink: str | None = None
    ) -> bool:
        """End an integration link, dropping the sink's pending rows for it at once."""
        return await self.delete(tenant_id, integration, LINK_KIND, key, pending_sink=pending_sink)
