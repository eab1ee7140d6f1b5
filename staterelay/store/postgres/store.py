"""The PostgreSQL store: StateRelay hosted, multi-tenant and on several replicas.

Each method is one transaction on a pooled connection. Methods given a tenant id name it
to the database first (row-level security then shows nothing else); the few lookups that
cross tenants call the owner's ``sr_*`` functions. Where the SQLite store relies on its
single writer, this one locks rows (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import asyncpg

from staterelay.core.errors import NotFound
from staterelay.core.records import (
    ActivityEntry,
    ApiKey,
    Device,
    PoolStats,
    PropertyState,
    StorageStats,
    Tenant,
    User,
    Webhook,
    WebhookDelivery,
    WebhookMutator,
)
from staterelay.jsoncodec import decode
from staterelay.store.postgres.accounts import PostgresAccount, insert_tenant, insert_user, user
from staterelay.store.postgres.alexa import PostgresAlexa
from staterelay.store.postgres.billing import PostgresBilling
from staterelay.store.postgres.devices import PostgresDevices
from staterelay.store.postgres.engine import (
    PostgresEngine,
    pending_migrations,
    rowcount,
)
from staterelay.store.postgres.ifttt import PostgresIfttt
from staterelay.store.postgres.integrations import PostgresIntegrations
from staterelay.store.postgres.leadership import PostgresLeadership
from staterelay.store.postgres.oauth import PostgresOAuth
from staterelay.store.postgres.outbox import (
    PostgresOutbox,
)

if TYPE_CHECKING:
    from staterelay.store.postgres.engine import Connection

_LOGGER = logging.getLogger(__name__)

_DEVICE_SELECT = (
    "SELECT d.seq, d.id, d.tenant_id, d.type, d.name, d.description, d.options, d.version,"
    " d.created_at, d.updated_at, d.room, p.names, p.vals, p.times FROM devices d"
    " LEFT JOIN LATERAL (SELECT array_agg(name ORDER BY name) AS names,"
    "  array_agg(value::text ORDER BY name) AS vals,"
    "  array_agg(changed_at ORDER BY name) AS times"
    "  FROM device_properties WHERE tenant_id = d.tenant_id AND device_id = d.id) p ON true"
)
_ACTIVITY_COLUMNS = (
    "id, tenant_id, device_id, device_name, kind, source, actor, cause, property,"
    " old_value, new_value, detail, created_at"
)
_WEBHOOK_COLUMNS = (
    "seq, id, tenant_id, url, description, device_ids, event_types, enabled,"
    " secret_ciphertext, created_at, updated_at, disabled_reason, format, ifttt_event,"
    " ifttt_key_ciphertext"
)
_API_KEY_COLUMNS = (
    "id, tenant_id, user_id, name, prefix, scopes, created_at, last_used_at, revoked_at, device_ids"
)


class PostgresStore(
    PostgresDevices,
    PostgresAccount,
    PostgresOAuth,
    PostgresAlexa,
    PostgresIfttt,
    PostgresOutbox,
    PostgresBilling,
    PostgresIntegrations,
    PostgresLeadership,
):
    """``Store`` on a PostgreSQL database shared by any number of replicas."""

    def __init__(
        self, url: str, *, migrate_url: str | None = None, migrations: Sequence[Traversable] = ()
    ) -> None:
        self.engine = PostgresEngine(url, migrate_url=migrate_url, migrations=migrations)
        self._init_devices()

    async def configure_ifttt_realtime(
        self, *, enabled: bool, debounce_seconds: float, now: float
    ) -> None:
        """Store the Realtime switch and window; households' facts are read again."""
        await super().configure_ifttt_realtime(
            enabled=enabled, debounce_seconds=debounce_seconds, now=now
        )
        self.forget_interest()

    # lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and migrate (as the owner when ``migrate_url`` is given)."""
        await self.engine.open()
        security = (await self.settings_report())["row_level_security"]
        if security != "enforced":
            _LOGGER.warning(
                "row-level security does not separate tenants for the role %s (%s)",
                self.engine.role,
                security,
            )

    async def close(self) -> None:
        """Close the pool."""
        await self.engine.close()

    def pool_stats(self) -> PoolStats:
        """The asyncpg pool's size, limit and borrowed connections."""
        return self.engine.pool_stats()

    def storage_stats(self) -> StorageStats:
        """Writes the server refused for lack of space; its free space is the database
        host's to watch (this process cannot see that disk)."""
        return StorageStats(free_bytes=None, full_errors=self.engine.storage_full_errors)

    async def ready(self) -> bool:
        """True when a query answers and no migration is pending."""
        try:
            async with self.engine.instance(readonly=True) as conn:
                return not await pending_migrations(conn, self.engine.migrations)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError):
            return False

    async def settings_report(self) -> Mapping[str, str]:
        """Server version, durability and whether row-level security binds this role."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT current_setting('server_version') AS version,"
                " current_setting('synchronous_commit') AS synchronous_commit,"
                " current_setting('default_transaction_isolation') AS isolation,"
                " current_user AS role, r.rolsuper, r.rolbypassrls,"
                " EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid"
                "  AND c.relnamespace = 'public'::regnamespace) AS owns_tables"
                " FROM pg_roles r WHERE r.rolname = current_user"
            )
        assert row is not None
        if row["rolsuper"] or row["rolbypassrls"]:
            security = "bypassed: the role is a superuser or has BYPASSRLS"
        elif row["owns_tables"]:
            security = "bypassed: the role owns the tables (set database.migrate_url)"
        else:
            security = "enforced"
        return {
            "engine": "postgresql",
            "server_version": str(row["version"]),
            "synchronous_commit": str(row["synchronous_commit"]),
            "isolation": str(row["isolation"]),
            "role": str(row["role"]),
            "row_level_security": security,
        }

    # tenants and users ---------------------------------------------------------------------
    async def create_tenant(self, tenant: Tenant) -> Tenant:
        """Insert a tenant."""
        async with self.engine.tenant(tenant.id) as conn:
            await insert_tenant(conn, tenant)
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """One tenant."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT id, name, created_at FROM tenants WHERE id = $1", tenant_id
            )
        return None if row is None else Tenant(*row)

    async def first_tenant(self) -> Tenant | None:
        """The oldest tenant."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow("SELECT id, name, created_at FROM sr_first_tenant()")
        return None if row is None else Tenant(*row)

    async def get_instance_marker(self, name: str) -> str | None:
        """A fact the instance keeps about itself (an instance-wide table, no tenant)."""
        async with self.engine.instance(readonly=True) as conn:
            value = await conn.fetchval("SELECT value FROM instance_markers WHERE name = $1", name)
        return None if value is None else str(value)

    async def set_instance_marker(
        self, name: str, value: str, now: float, *, replacing: str | None = None
    ) -> str:
        """Keep ``value`` if ``replacing`` is what is kept (None: nothing); returns the kept."""
        async with self.engine.instance() as conn:
            await conn.execute(
                "INSERT INTO instance_markers (name, value, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " created_at = excluded.created_at"
                " WHERE instance_markers.value IS NOT DISTINCT FROM $4",
                name,
                value,
                now,
                replacing,
            )
            kept = await conn.fetchval("SELECT value FROM instance_markers WHERE name = $1", name)
        return str(kept)

    async def create_user(self, user: User) -> User:
        """Insert a user; Conflict on a taken email."""
        async with self.engine.tenant(user.tenant_id) as conn:
            await insert_user(conn, user)
        return user

    async def get_user(self, tenant_id: str, user_id: str) -> User | None:
        """One user of a tenant."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT id, tenant_id, email, is_admin, created_at, password_hash FROM users"
                " WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                user_id,
            )
        return None if row is None else user(row)

    async def find_user_by_email(self, email: str) -> User | None:
        """The user with this email, any tenant."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT id, tenant_id, email, is_admin, created_at, password_hash"
                " FROM sr_user_by_email($1)",
                email.casefold(),
            )
        return None if row is None else user(row)

    async def count_users(self) -> int:
        """Number of users."""
        async with self.engine.instance(readonly=True) as conn:
            return int(await conn.fetchval("SELECT sr_count_users()"))

    # API keys ------------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        """Insert a key by digest."""
        async with self.engine.tenant(key.tenant_id) as conn:
            await conn.execute(
                "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, digest, scopes,"
                " created_at, device_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                key.id,
                key.tenant_id,
                key.user_id,
                key.name,
                key.prefix,
                digest,
                list(key.scopes),
                key.created_at,
                None if key.device_ids is None else list(key.device_ids),
            )
        return key

    async def find_api_key(self, digest: str) -> ApiKey | None:
        """The key with this digest."""
        async with self.engine.instance(readonly=True) as conn:
            row = await conn.fetchrow(
                f"SELECT {_API_KEY_COLUMNS} FROM sr_api_key_by_digest($1)", digest
            )
        return None if row is None else _api_key(row)

    async def list_api_keys(self, tenant_id: str, user_id: str) -> Sequence[ApiKey]:
        """A user's keys, newest first."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND user_id = $2"
                " ORDER BY created_at DESC, seq DESC",
                tenant_id,
                user_id,
            )
        return [_api_key(row) for row in rows]

    async def revoke_api_key(self, tenant_id: str, user_id: str, key_id: str, at: float) -> bool:
        """Revoke one of a user's keys."""
        async with self.engine.tenant(tenant_id) as conn:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND user_id = $3"
                " AND id = $4 AND revoked_at IS NULL",
                at,
                tenant_id,
                user_id,
                key_id,
            )
        return rowcount(status) == 1

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None:
        """Record last-used times (keys of any tenant)."""
        if not last_used:
            return
        async with self.engine.instance() as conn:
            await conn.execute(
                "SELECT sr_touch_api_keys($1, $2)", list(last_used), list(last_used.values())
            )

    # devices -------------------------------------------------------------------------------
    async def list_devices(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[Device]:
        """Devices in creation order."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"{_DEVICE_SELECT} WHERE d.tenant_id = $1 AND d.seq > $2 ORDER BY d.seq LIMIT $3",
                tenant_id,
                after_seq or 0,
                limit,
            )
        return [_device(row) for row in rows]

    async def count_devices(self, tenant_id: str) -> int:
        """Device count of a tenant."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            return int(
                await conn.fetchval("SELECT count(*) FROM devices WHERE tenant_id = $1", tenant_id)
            )

    # activity ------------------------------------------------------------------------------
    async def list_activity(
        self,
        tenant_id: str,
        *,
        device_id: str | None = None,
        device_ids: Sequence[str] | None = None,
        source: str | None = None,
        before_id: int | None = None,
        limit: int,
    ) -> Sequence[ActivityEntry]:
        """Newest-first activity."""
        where = ["tenant_id = $1"]
        params: list[Any] = [tenant_id]
        for column, value, op in (
            ("device_id", device_id, "="),
            ("source", source, "="),
            ("id", before_id, "<"),
        ):
            if value is not None:
                params.append(value)
                where.append(f"{column} {op} ${len(params)}")
        if device_ids is not None:
            params.append(list(device_ids))
            where.append(f"device_id = ANY (${len(params)}::text[])")
        params.append(limit)
        sql = (
            f"SELECT {_ACTIVITY_COLUMNS} FROM activity_log WHERE {' AND '.join(where)}"
            f" ORDER BY id DESC LIMIT ${len(params)}"
        )
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(sql, *params)
        return [_activity(row) for row in rows]

    async def prune_activity(self, older_than: float) -> int:
        """Delete old activity, finished outbox rows and delivery history (all tenants)."""
        async with self.engine.instance() as conn:
            return int(await conn.fetchval("SELECT sr_prune_activity($1)", older_than))

    # webhooks ------------------------------------------------------------------------------
    async def create_webhook(self, webhook: Webhook) -> Webhook:
        """Insert a webhook."""
        async with self.engine.tenant(webhook.tenant_id) as conn:
            seq = await conn.fetchval(
                "INSERT INTO webhooks (id, tenant_id, url, description, device_ids, event_types,"
                " enabled, secret_ciphertext, disabled_reason, created_at, updated_at, format,"
                " ifttt_event, ifttt_key_ciphertext)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                " RETURNING seq",
                *_webhook_params(webhook),
            )
        return dataclasses.replace(webhook, seq=int(seq))

    async def get_webhook(self, tenant_id: str, webhook_id: str) -> Webhook | None:
        """One webhook, in one round trip (``sr_get_webhook`` sets the tenant)."""
        async with self.engine.statement() as conn:
            row = await conn.fetchrow(
                f"SELECT {_WEBHOOK_COLUMNS} FROM sr_get_webhook($1, $2)", tenant_id, webhook_id
            )
        return None if row is None else _webhook(row)

    async def list_webhooks(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[Webhook]:
        """Webhooks in creation order."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3",
                tenant_id,
                after_seq or 0,
                limit,
            )
        return [_webhook(row) for row in rows]

    async def update_webhook(
        self, tenant_id: str, webhook_id: str, mutate: WebhookMutator
    ) -> Webhook:
        """Replace a webhook with the mutator's result."""
        async with self.engine.tenant(tenant_id) as conn:
            current = await _load_webhook(conn, tenant_id, webhook_id, lock=True)
            if current is None:
                raise NotFound("no such webhook")
            new = mutate(current)
            params = _webhook_params(new)
            await conn.execute(
                "UPDATE webhooks SET url = $1, description = $2, device_ids = $3,"
                " event_types = $4, enabled = $5, secret_ciphertext = $6, disabled_reason = $7,"
                " updated_at = $8, format = $9, ifttt_event = $10, ifttt_key_ciphertext = $11"
                " WHERE tenant_id = $12 AND id = $13",
                *params[2:9],
                *params[10:],
                tenant_id,
                webhook_id,
            )
            if not new.enabled:
                await _drop_pending(conn, tenant_id, webhook_id)
        return dataclasses.replace(new, seq=current.seq)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        """Delete a webhook and what is queued for it."""
        async with self.engine.tenant(tenant_id) as conn:
            deleted = rowcount(
                await conn.execute(
                    "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2", tenant_id, webhook_id
                )
            )
            if deleted:
                await _drop_pending(conn, tenant_id, webhook_id)
        return bool(deleted)

    async def list_webhook_deliveries(
        self, tenant_id: str, webhook_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[WebhookDelivery]:
        """Delivery attempts of a webhook, newest first."""
        async with self.engine.tenant(tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT id, tenant_id, webhook_id, event_id, event_type, attempt, status_code,"
                " error, duration_ms, created_at FROM webhook_deliveries"
                " WHERE tenant_id = $1 AND webhook_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4",
                tenant_id,
                webhook_id,
                before_id if before_id is not None else 2**62,
                limit,
            )
        return [WebhookDelivery(*row) for row in rows]


# A change's writes in one round trip: the properties, the device row and the activity
# rows (the data-modifying WITH parts run whether or not the main statement reads them).
# Activity ids are assigned in the order of the rows, which the caller sorts back.
# row helpers ---------------------------------------------------------------------------------


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        user_id=row["user_id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        device_ids=None if row["device_ids"] is None else tuple(row["device_ids"]),
    )


def _device(row: asyncpg.Record) -> Device:
    names = row["names"] or ()
    properties = {
        name: PropertyState(value=decode(value), changed_at=changed_at)
        for name, value, changed_at in zip(
            names, row["vals"] or (), row["times"] or (), strict=True
        )
    }
    return Device(
        seq=row["seq"],
        id=row["id"],
        tenant_id=row["tenant_id"],
        type=row["type"],
        name=row["name"],
        description=row["description"],
        options=row["options"],
        properties=properties,
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        room=row["room"],
    )


def _activity(row: asyncpg.Record) -> ActivityEntry:
    return ActivityEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        device_id=row["device_id"],
        device_name=row["device_name"],
        kind=row["kind"],
        source=row["source"],
        actor=row["actor"],
        cause=row["cause"],
        property=row["property"],
        old_value=row["old_value"],
        new_value=row["new_value"],
        detail=row["detail"] or {},
        created_at=row["created_at"],
    )


async def _drop_pending(conn: Connection, tenant_id: str, webhook_id: str) -> None:
    await conn.execute(
        "DELETE FROM outbox WHERE tenant_id = $1 AND sink = 'webhook' AND destination = $2"
        " AND status = 'pending'",
        tenant_id,
        webhook_id,
    )


def _webhook_params(webhook: Webhook) -> tuple[Any, ...]:
    return (
        webhook.id,
        webhook.tenant_id,
        webhook.url,
        webhook.description,
        None if webhook.device_ids is None else list(webhook.device_ids),
        None if webhook.event_types is None else list(webhook.event_types),
        webhook.enabled,
        webhook.secret_ciphertext,
        webhook.disabled_reason,
        webhook.created_at,
        webhook.updated_at,
        webhook.format,
        webhook.ifttt_event,
        webhook.ifttt_key_ciphertext,
    )


async def _load_webhook(
    conn: Connection, tenant_id: str, webhook_id: str, *, lock: bool = False
) -> Webhook | None:
    row = await conn.fetchrow(
        f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        webhook_id,
    )
    return None if row is None else _webhook(row)


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(
        seq=row["seq"],
        id=row["id"],
        tenant_id=row["tenant_id"],
        url=row["url"],
        description=row["description"],
        device_ids=None if row["device_ids"] is None else tuple(row["device_ids"]),
        event_types=None if row["event_types"] is None else tuple(row["event_types"]),
        enabled=row["enabled"],
        secret_ciphertext=row["secret_ciphertext"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_reason=row["disabled_reason"],
        format=row["format"],
        ifttt_event=row["ifttt_event"],
        ifttt_key_ciphertext=row["ifttt_key_ciphertext"],
    )


__all__ = ["PostgresStore"]
