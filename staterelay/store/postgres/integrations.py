"""``IntegrationRecordStore`` on PostgreSQL: ``integration_records`` (migration 0012), under
row-level security like every tenant table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from staterelay.core.records.integrations import IntegrationRecord
from staterelay.store.postgres.engine import PostgresEngine, rowcount

_COLUMNS = "tenant_id, integration, kind, key, data, created_at, updated_at"


def _record(row: asyncpg.Record) -> IntegrationRecord:
    return IntegrationRecord(
        tenant_id=row["tenant_id"],
        integration=row["integration"],
        kind=row["kind"],
        key=row["key"],
        data=row["data"] or {},
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


class PostgresIntegrations:
    """``IntegrationRecordStore`` on PostgreSQL; mixed into ``PostgresStore``."""

    engine: PostgresEngine

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
        async with self.engine.tenant(tenant_id) as conn:
            row = await conn.fetchrow(
                f"INSERT INTO integration_records ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $6)"
                " ON CONFLICT (tenant_id, integration, kind, key) DO UPDATE"
                " SET data = excluded.data, updated_at = excluded.updated_at"
                f" RETURNING {_COLUMNS}",
                tenant_id,
                integration,
                kind,
                key,
                dict(data),
                now,
            )
        assert row is not None
        return _record(row)

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
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE integration_records SET data = data || $1::jsonb, updated_at = $2"
                " WHERE tenant_id = $3 AND integration = $4 AND kind = $5 AND key = $6",
                dict(changes),
                now,
                tenant_id,
                integration,
                kind,
                key,
            )
        return rowcount(status) == 1

    async def get_integration_record(
        self, tenant_id: str, integration: str, kind: str, key: str
    ) -> IntegrationRecord | None:
        """One record, or None."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM integration_records"
                " WHERE tenant_id = $1 AND integration = $2 AND kind = $3 AND key = $4",
                tenant_id,
                integration,
                kind,
                key,
            )
        return None if row is None else _record(row)

    async def list_integration_records(
        self, tenant_id: str, integration: str, kind: str
    ) -> Sequence[IntegrationRecord]:
        """A household's records of one integration and kind, by key."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM integration_records"
                " WHERE tenant_id = $1 AND integration = $2 AND kind = $3 ORDER BY key",
                tenant_id,
                integration,
                kind,
            )
        return [_record(row) for row in rows]

    async def delete_integration_record(
        self,
        tenant_id: str,
        integration: str,
        kind: str,
        key: str,
        *,
        pending_sink: str | None = None,
    ) -> bool:
        """Delete a record, and with ``pending_sink`` its pending outbox rows."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "DELETE FROM integration_records"
                " WHERE tenant_id = $1 AND integration = $2 AND kind = $3 AND key = $4",
                tenant_id,
                integration,
                kind,
                key,
            )
            if pending_sink is not None:
                await conn.execute(
                    "DELETE FROM outbox WHERE tenant_id = $1 AND sink = $2 AND destination = $3"
                    " AND status = 'pending'",
                    tenant_id,
                    pending_sink,
                    key,
                )
        return rowcount(status) == 1
