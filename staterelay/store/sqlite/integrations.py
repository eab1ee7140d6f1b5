"""``IntegrationRecordStore`` on SQLite: the ``integration_records`` table (migration 0011)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from staterelay.core.records.integrations import IntegrationRecord
from staterelay.jsoncodec import decode, encode_sorted_text
from staterelay.store.sqlite.engine import SQLiteEngine

_COLUMNS = "tenant_id, integration, kind, key, data, created_at, updated_at"


def _record(row: sqlite3.Row | tuple[Any, ...]) -> IntegrationRecord:
    return IntegrationRecord(
        tenant_id=row[0],
        integration=row[1],
        kind=row[2],
        key=row[3],
        data=decode(row[4]),
        created_at=float(row[5]),
        updated_at=float(row[6]),
    )


class SQLiteIntegrations:
    """``IntegrationRecordStore`` on SQLite; mixed into ``SQLiteStore``."""

    engine: SQLiteEngine

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

        def write(conn: sqlite3.Connection) -> IntegrationRecord:
            row = conn.execute(
                f"INSERT INTO integration_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, integration, kind, key) DO UPDATE"
                " SET data = excluded.data, updated_at = excluded.updated_at"
                f" RETURNING {_COLUMNS}",
                (tenant_id, integration, kind, key, encode_sorted_text(dict(data)), now, now),
            ).fetchone()
            return _record(row)

        return await self.engine.write(write)

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

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE integration_records SET data = json_patch(data, ?), updated_at = ?"
                " WHERE tenant_id = ? AND integration = ? AND kind = ? AND key = ?",
                (encode_sorted_text(dict(changes)), now, tenant_id, integration, kind, key),
            )
            return cursor.rowcount == 1

        return await self.engine.write(write)

    async def get_integration_record(
        self, tenant_id: str, integration: str, kind: str, key: str
    ) -> IntegrationRecord | None:
        """One record, or None."""

        def read(conn: sqlite3.Connection) -> IntegrationRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM integration_records"
                " WHERE tenant_id = ? AND integration = ? AND kind = ? AND key = ?",
                (tenant_id, integration, kind, key),
            ).fetchone()
            return None if row is None else _record(row)

        return await self.engine.read(read)

    async def list_integration_records(
        self, tenant_id: str, integration: str, kind: str
    ) -> Sequence[IntegrationRecord]:
        """A household's records of one integration and kind, by key."""

        def read(conn: sqlite3.Connection) -> list[IntegrationRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM integration_records"
                " WHERE tenant_id = ? AND integration = ? AND kind = ? ORDER BY key",
                (tenant_id, integration, kind),
            ).fetchall()
            return [_record(row) for row in rows]

        return await self.engine.read(read)

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

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM integration_records"
                " WHERE tenant_id = ? AND integration = ? AND kind = ? AND key = ?",
                (tenant_id, integration, kind, key),
            )
            if pending_sink is not None:
                conn.execute(
                    "DELETE FROM outbox WHERE sink = ? AND destination = ? AND tenant_id = ?"
                    " AND status = 'pending'",
                    (pending_sink, key, tenant_id),
                )
            return cursor.rowcount == 1

        return await self.engine.write(write)
