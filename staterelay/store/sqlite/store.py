"""The SQLite store: StateRelay's default, embedded engine."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Hashable, Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from staterelay.core.delivery import DeviceFacts, InterestFacts, Planner
from staterelay.core.errors import Conflict, NotFound
from staterelay.core.records import (
    ActivityEntry,
    ApiKey,
    CommittedChange,
    Device,
    DeviceMutator,
    DeviceRemover,
    NewActivity,
    NewOutboxEvent,
    PoolStats,
    PropertyState,
    StorageStats,
    Tenant,
    User,
    Webhook,
    WebhookDelivery,
    WebhookMutator,
)
from staterelay.jsoncodec import decode, encode_sorted_text
from staterelay.store.sqlite.accounts import SQLiteAccount, insert_user
from staterelay.store.sqlite.activity import insert_activity
from staterelay.store.sqlite.alexa import SQLiteAlexa
from staterelay.store.sqlite.billing import SQLiteBilling
from staterelay.store.sqlite.delivery import InterestCache, apply_plan
from staterelay.store.sqlite.engine import SQLiteEngine, pending_migrations
from staterelay.store.sqlite.ifttt import SQLiteIfttt
from staterelay.store.sqlite.integrations import SQLiteIntegrations
from staterelay.store.sqlite.leadership import SQLiteLeadership
from staterelay.store.sqlite.oauth import SQLiteOAuth
from staterelay.store.sqlite.outbox import LEASES, SQLiteOutbox

# Devices the writer remembers between changes (forgotten all at once when full).
WRITTEN_MAX = 4096

_DEVICE_COLUMNS = (
    "seq, id, tenant_id, type, name, description, options, version, created_at, updated_at, room"
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


def _loads(text: str | None) -> Any:
    return None if text is None else decode(text)


class SQLiteStore(
    SQLiteOutbox,
    SQLiteAccount,
    SQLiteOAuth,
    SQLiteAlexa,
    SQLiteIfttt,
    SQLiteBilling,
    SQLiteIntegrations,
    SQLiteLeadership,
):
    """``Store`` on one SQLite file."""

    def __init__(
        self, path: Path, *, durability: str = "full", migrations: Sequence[Traversable] = ()
    ) -> None:
        self.path = path
        self.engine = SQLiteEngine(path, durability=durability, migrations=migrations)
        self._interest = InterestCache()

    async def configure_ifttt_realtime(
        self, *, enabled: bool, debounce_seconds: float, now: float
    ) -> None:
        """Store the Realtime switch and window; households' facts are read again."""
        await super().configure_ifttt_realtime(
            enabled=enabled, debounce_seconds=debounce_seconds, now=now
        )
        self._interest.clear()

    # lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, migrate, and make the deliverer's lease table (in memory)."""
        await self.engine.open()
        await self.engine.write(lambda conn: conn.execute(LEASES))

    async def close(self) -> None:
        """Flush and close."""
        await self.engine.close()

    def pool_stats(self) -> PoolStats:
        """The reader and writer connections, the writer's state and its queue."""
        return self.engine.pool_stats()

    def storage_stats(self) -> StorageStats:
        """Free bytes on the database's file system; writes the disk refused."""
        return self.engine.storage_stats()

    async def ready(self) -> bool:
        """True when a query answers and no migration is pending."""
        try:
            folders = self.engine.migrations
            return not await self.engine.read(lambda conn: pending_migrations(conn, folders))
        except (sqlite3.Error, RuntimeError):
            return False

    async def settings_report(self) -> Mapping[str, str]:
        """Journal mode, synchronous level and SQLite version."""

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            return {
                "engine": "sqlite",
                "sqlite_version": sqlite3.sqlite_version,
                "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
                "synchronous": str(conn.execute("PRAGMA synchronous").fetchone()[0]),
                "foreign_keys": str(conn.execute("PRAGMA foreign_keys").fetchone()[0]),
            }

        report = await self.engine.read(read)

        def writer_sync(conn: sqlite3.Connection) -> str:
            return str(conn.execute("PRAGMA synchronous").fetchone()[0])

        report["writer_synchronous"] = await self.engine.write(writer_sync)
        return report

    # tenants and users ---------------------------------------------------------------------
    async def create_tenant(self, tenant: Tenant) -> Tenant:
        """Insert a tenant."""

        def write(conn: sqlite3.Connection) -> Tenant:
            conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                (tenant.id, tenant.name, tenant.created_at),
            )
            return tenant

        return await self.engine.write(write)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """One tenant."""

        def read(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(
                "SELECT id, name, created_at FROM tenants WHERE id = ?", (tenant_id,)
            ).fetchone()
            return Tenant(*row) if row else None

        return await self.engine.read(read)

    async def first_tenant(self) -> Tenant | None:
        """The oldest tenant."""

        def read(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(
                "SELECT id, name, created_at FROM tenants ORDER BY created_at, rowid LIMIT 1"
            ).fetchone()
            return Tenant(*row) if row else None

        return await self.engine.read(read)

    async def get_instance_marker(self, name: str) -> str | None:
        """A fact the instance keeps about itself."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM instance_markers WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.engine.read(read)

    async def set_instance_marker(
        self, name: str, value: str, now: float, *, replacing: str | None = None
    ) -> str:
        """Keep ``value`` if ``replacing`` is what is kept (None: nothing); returns the kept."""

        def write(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO instance_markers (name, value, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " created_at = excluded.created_at WHERE instance_markers.value IS ?",
                (name, value, now, replacing),
            )
            row = conn.execute(
                "SELECT value FROM instance_markers WHERE name = ?", (name,)
            ).fetchone()
            return str(row[0])

        return await self.engine.write(write)

    async def create_user(self, user: User) -> User:
        """Insert a user; Conflict on a taken email."""

        def write(conn: sqlite3.Connection) -> User:
            insert_user(conn, user)
            return user

        return await self.engine.write(write)

    async def get_user(self, tenant_id: str, user_id: str) -> User | None:
        """One user of a tenant."""
        return await self.engine.read(
            lambda conn: _one_user(conn, "tenant_id = ? AND id = ?", (tenant_id, user_id))
        )

    async def find_user_by_email(self, email: str) -> User | None:
        """The user with this email, any tenant."""
        return await self.engine.read(
            lambda conn: _one_user(conn, "email_key = ?", (email.casefold(),))
        )

    async def count_users(self) -> int:
        """Number of users."""
        return await self.engine.read(
            lambda conn: int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
        )

    # API keys ------------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        """Insert a key by digest."""

        def write(conn: sqlite3.Connection) -> ApiKey:
            conn.execute(
                "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, digest, scopes,"
                " created_at, device_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.tenant_id,
                    key.user_id,
                    key.name,
                    key.prefix,
                    digest,
                    " ".join(key.scopes),
                    key.created_at,
                    None if key.device_ids is None else encode_sorted_text(list(key.device_ids)),
                ),
            )
            return key

        return await self.engine.write(write)

    async def find_api_key(self, digest: str) -> ApiKey | None:
        """The key with this digest."""

        def read(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE digest = ?",
                (digest,),
            ).fetchone()
            return _api_key(row) if row else None

        return await self.engine.read_statement(read)

    async def list_api_keys(self, tenant_id: str, user_id: str) -> Sequence[ApiKey]:
        """A user's keys, newest first."""

        def read(conn: sqlite3.Connection) -> list[ApiKey]:
            rows = conn.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND user_id = ?"
                " ORDER BY created_at DESC, rowid DESC",
                (tenant_id, user_id),
            ).fetchall()
            return [_api_key(row) for row in rows]

        return await self.engine.read(read)

    async def revoke_api_key(self, tenant_id: str, user_id: str, key_id: str, at: float) -> bool:
        """Revoke one of a user's keys."""

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND user_id = ?"
                " AND id = ? AND revoked_at IS NULL",
                (at, tenant_id, user_id, key_id),
            )
            return cursor.rowcount == 1

        return await self.engine.write(write)

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None:
        """Record last-used times."""
        if not last_used:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?",
                [(at, key_id) for key_id, at in last_used.items()],
            )

        await self.engine.write(write)

    # devices -------------------------------------------------------------------------------
    async def create_device(
        self,
        device: Device,
        activity: NewActivity,
        events: Sequence[NewOutboxEvent],
        *,
        plan: Planner,
    ) -> tuple[Device, ActivityEntry, int]:
        """Insert a device with its properties, log it and queue what its events owe."""

        def write(conn: sqlite3.Connection) -> tuple[Device, ActivityEntry, int]:
            try:
                cursor = conn.execute(
                    "INSERT INTO devices (id, tenant_id, type, name, name_key, description,"
                    " options, version, created_at, updated_at, room)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        device.id,
                        device.tenant_id,
                        device.type,
                        device.name,
                        device.name.casefold(),
                        device.description,
                        encode_sorted_text(dict(device.options)),
                        device.version,
                        device.created_at,
                        device.updated_at,
                        device.room,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "name_key" in str(exc):
                    raise Conflict("a device with this name exists", field="name") from None
                raise Conflict("a device with this id exists", field="id") from None
            conn.executemany(
                "INSERT INTO device_properties (tenant_id, device_id, name, value, changed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (device.tenant_id, device.id, name, encode_sorted_text(p.value), p.changed_at)
                    for name, p in device.properties.items()
                ],
            )
            stored = _replace_seq(device, int(cursor.lastrowid or 0))
            entry = insert_activity(conn, device.tenant_id, activity, device.created_at)
            rows = self._deliver(
                conn, device.tenant_id, events, _facts_of(stored), device.created_at, plan
            )
            return stored, entry, rows

        return await self.engine.write(write)

    async def get_device(self, tenant_id: str, device_id: str) -> Device | None:
        """One device (remembered while the database is unchanged: see ``read_cached``)."""
        return self.engine.read_cached(
            ("device", tenant_id, device_id),
            lambda conn: _load_device(conn, tenant_id, device_id),
        )

    async def list_devices(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[Device]:
        """Devices in creation order."""

        def read(conn: sqlite3.Connection) -> list[Device]:
            rows = conn.execute(
                f"{_DEVICE_SELECT} WHERE d.tenant_id = ? AND d.seq > ? ORDER BY d.seq LIMIT ?",
                (tenant_id, after_seq or 0, limit),
            ).fetchall()
            return [_device(row) for row in rows]

        return await self.engine.read_statement(read)

    async def count_devices(self, tenant_id: str) -> int:
        """Device count of a tenant."""
        return await self.engine.read(
            lambda conn: int(
                conn.execute(
                    "SELECT count(*) FROM devices WHERE tenant_id = ?", (tenant_id,)
                ).fetchone()[0]
            )
        )

    async def change_device(
        self, tenant_id: str, device_id: str, mutate: DeviceMutator, now: float, *, plan: Planner
    ) -> CommittedChange:
        """Load, mutate and write a device, and queue what the change owes, in one transaction."""

        def write(conn: sqlite3.Connection) -> CommittedChange:
            before = _current_device(conn, written, tenant_id, device_id)
            change = mutate(before)
            if change.is_empty:
                return CommittedChange(before=before, after=before, activity=(), outbox_rows=0)
            properties = dict(before.properties)
            for name, value in change.properties.items():
                properties[name] = PropertyState(value=value, changed_at=now)
                conn.execute(
                    "INSERT INTO device_properties (tenant_id, device_id, name, value, changed_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, name)"
                    " DO UPDATE SET value = excluded.value, changed_at = excluded.changed_at",
                    (tenant_id, device_id, name, encode_sorted_text(value), now),
                )
            name = change.name if change.name is not None else before.name
            description = (
                change.description if change.description is not None else before.description
            )
            options = dict(change.options) if change.options is not None else before.options
            room = change.room if change.room is not None else before.room
            version = before.version + 1
            if (
                change.name is None
                and change.description is None
                and change.options is None
                and change.room is None
            ):
                conn.execute(
                    "UPDATE devices SET version = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
                    (version, now, tenant_id, device_id),
                )
            else:
                try:
                    conn.execute(
                        "UPDATE devices SET name = ?, name_key = ?, description = ?,"
                        " options = ?, version = ?, updated_at = ?, room = ?"
                        " WHERE tenant_id = ? AND id = ?",
                        (
                            name,
                            name.casefold(),
                            description,
                            encode_sorted_text(dict(options)),
                            version,
                            now,
                            room,
                            tenant_id,
                            device_id,
                        ),
                    )
                except sqlite3.IntegrityError:
                    raise Conflict("a device with this name exists", field="name") from None
            after = Device(
                seq=before.seq,
                id=before.id,
                tenant_id=tenant_id,
                type=before.type,
                name=name,
                description=description,
                options=options,
                properties=properties,
                version=version,
                created_at=before.created_at,
                updated_at=now,
                room=room,
            )
            entries = tuple(insert_activity(conn, tenant_id, a, now) for a in change.activity)
            rows = self._deliver(conn, tenant_id, change.events, _facts_of(after), now, plan)
            _remember_device(written, after)
            return CommittedChange(before=before, after=after, activity=entries, outbox_rows=rows)

        written = self.engine.written
        return await self.engine.write(write)

    async def delete_device(
        self,
        tenant_id: str,
        device_id: str,
        remove: DeviceRemover,
        now: float,
        *,
        plan: Planner,
    ) -> tuple[Device, ActivityEntry, int]:
        """Delete a device as ``remove`` decides (it may refuse), and queue what it owes."""

        def write(conn: sqlite3.Connection) -> tuple[Device, ActivityEntry, int]:
            device = _load_device(conn, tenant_id, device_id)
            if device is None:
                raise NotFound("no such device")
            removal = remove(device)
            conn.execute(
                "DELETE FROM devices WHERE tenant_id = ? AND id = ?", (tenant_id, device_id)
            )
            entry = insert_activity(conn, tenant_id, removal.activity, now)
            gone = DeviceFacts(device_id=device_id, type=None, options={}, version=None)
            rows = self._deliver(conn, tenant_id, removal.events, gone, now, plan)
            return device, entry, rows

        return await self.engine.write(write)

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
        where = ["tenant_id = ?"]
        params: list[Any] = [tenant_id]
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if device_ids is not None:
            where.append("device_id IN (SELECT value FROM json_each(?))")
            params.append(encode_sorted_text(list(device_ids)))
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        params.append(limit)
        sql = (
            f"SELECT {_ACTIVITY_COLUMNS} FROM activity_log WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[ActivityEntry]:
            return [_activity(row) for row in conn.execute(sql, params).fetchall()]

        return await self.engine.read(read)

    async def prune_activity(self, older_than: float) -> int:
        """Delete old activity and finished outbox rows."""

        def write(conn: sqlite3.Connection) -> int:
            # Ids grow with time, so the cut-off is the first id that is new enough: the
            # scan touches only the rows being deleted, with no index on created_at.
            removed = conn.execute(
                "DELETE FROM activity_log WHERE id < coalesce(("
                " SELECT id FROM activity_log WHERE created_at >= ? ORDER BY id LIMIT 1),"
                " (SELECT max(id) + 1 FROM activity_log))",
                (older_than,),
            ).rowcount
            removed += conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND finished_at < ?", (older_than,)
            ).rowcount
            removed += conn.execute(
                "DELETE FROM webhook_deliveries WHERE created_at < ?", (older_than,)
            ).rowcount
            return int(removed)

        return await self.engine.write(write)

    # webhooks ------------------------------------------------------------------------------
    async def create_webhook(self, webhook: Webhook) -> Webhook:
        """Insert a webhook."""

        def write(conn: sqlite3.Connection) -> Webhook:
            cursor = conn.execute(
                "INSERT INTO webhooks (id, tenant_id, url, description, device_ids, event_types,"
                " enabled, secret_ciphertext, disabled_reason, created_at, updated_at, format,"
                " ifttt_event, ifttt_key_ciphertext)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _webhook_params(webhook),
            )
            return _webhook_with_seq(webhook, int(cursor.lastrowid or 0))

        return await self.engine.write(write)

    async def get_webhook(self, tenant_id: str, webhook_id: str) -> Webhook | None:
        """One webhook."""
        return await self.engine.read(lambda conn: _load_webhook(conn, tenant_id, webhook_id))

    async def list_webhooks(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[Webhook]:
        """Webhooks in creation order."""

        def read(conn: sqlite3.Connection) -> list[Webhook]:
            rows = conn.execute(
                f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (tenant_id, after_seq or 0, limit),
            ).fetchall()
            return [_webhook(row) for row in rows]

        return await self.engine.read(read)

    async def update_webhook(
        self, tenant_id: str, webhook_id: str, mutate: WebhookMutator
    ) -> Webhook:
        """Replace a webhook with the mutator's result."""

        def write(conn: sqlite3.Connection) -> Webhook:
            current = _load_webhook(conn, tenant_id, webhook_id)
            if current is None:
                raise NotFound("no such webhook")
            new = mutate(current)
            params = _webhook_params(new)
            conn.execute(
                "UPDATE webhooks SET url = ?, description = ?, device_ids = ?, event_types = ?,"
                " enabled = ?, secret_ciphertext = ?, disabled_reason = ?, updated_at = ?,"
                " format = ?, ifttt_event = ?, ifttt_key_ciphertext = ?"
                " WHERE tenant_id = ? AND id = ?",
                (*params[2:9], *params[10:], tenant_id, webhook_id),
            )
            if not new.enabled:
                conn.execute(
                    "DELETE FROM outbox WHERE sink = 'webhook' AND destination = ?"
                    " AND tenant_id = ? AND status = 'pending'",
                    (webhook_id, tenant_id),
                )
            return _webhook_with_seq(new, current.seq)

        return await self.engine.write(write)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        """Delete a webhook and what is queued for it."""

        def write(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute(
                "DELETE FROM webhooks WHERE tenant_id = ? AND id = ?", (tenant_id, webhook_id)
            ).rowcount
            if deleted:
                conn.execute(
                    "DELETE FROM outbox WHERE sink = 'webhook' AND destination = ?"
                    " AND tenant_id = ? AND status = 'pending'",
                    (webhook_id, tenant_id),
                )
            return bool(deleted)

        return await self.engine.write(write)

    async def enqueue_events(
        self, tenant_id: str, events: Sequence[NewOutboxEvent], now: float, *, plan: Planner
    ) -> int:
        """Queue what events outside a device change owe (a webhook's test send)."""
        none = DeviceFacts(device_id="", type=None, options={}, version=None)

        def write(conn: sqlite3.Connection) -> int:
            return self._deliver(conn, tenant_id, events, none, now, plan)

        return await self.engine.write(write)

    # delivery ------------------------------------------------------------------------------
    async def interest_facts(self, tenant_id: str) -> InterestFacts:
        """What the household's changes are delivered to, as the planner sees it."""
        return await self.engine.write(lambda conn: self._interest.facts(conn, tenant_id))

    def _deliver(
        self,
        conn: sqlite3.Connection,
        tenant_id: str,
        events: Sequence[NewOutboxEvent],
        device: DeviceFacts,
        now: float,
        plan: Planner,
    ) -> int:
        """Plan (core's rules) and queue what ``events`` owe, inside the caller's write."""
        if not events:
            return 0
        facts = self._interest.facts(conn, tenant_id)
        return apply_plan(conn, tenant_id, plan(events, facts, device, now), now)

    async def list_webhook_deliveries(
        self, tenant_id: str, webhook_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[WebhookDelivery]:
        """Delivery attempts of a webhook, newest first."""

        def read(conn: sqlite3.Connection) -> list[WebhookDelivery]:
            rows = conn.execute(
                "SELECT id, tenant_id, webhook_id, event_id, event_type, attempt, status_code,"
                " error, duration_ms, created_at FROM webhook_deliveries"
                " WHERE tenant_id = ? AND webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (tenant_id, webhook_id, before_id if before_id is not None else 2**62, limit),
            ).fetchall()
            return [WebhookDelivery(*row) for row in rows]

        return await self.engine.read(read)


# row helpers ---------------------------------------------------------------------------------


def _now_from(conn: sqlite3.Connection) -> float:
    return float(conn.execute("SELECT (julianday('now') - 2440587.5) * 86400.0").fetchone()[0])


def _one_user(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> User | None:
    row = conn.execute(
        "SELECT id, tenant_id, email, is_admin, created_at, password_hash FROM users"
        f" WHERE {where}",
        params,
    ).fetchone()
    if row is None:
        return None
    return User(
        id=row[0],
        tenant_id=row[1],
        email=row[2],
        is_admin=bool(row[3]),
        created_at=row[4],
        password_hash=row[5],
    )


def _api_key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        tenant_id=row[1],
        user_id=row[2],
        name=row[3],
        prefix=row[4],
        scopes=tuple(row[5].split()),
        created_at=row[6],
        last_used_at=row[7],
        revoked_at=row[8],
        device_ids=None if row[9] is None else tuple(decode(row[9])),
    )


def _replace_seq(device: Device, seq: int) -> Device:
    return Device(
        seq=seq,
        id=device.id,
        tenant_id=device.tenant_id,
        type=device.type,
        name=device.name,
        description=device.description,
        options=device.options,
        properties=device.properties,
        version=device.version,
        created_at=device.created_at,
        updated_at=device.updated_at,
        room=device.room,
    )


_DEVICE_SELECT = (
    f"SELECT {', '.join('d.' + c.strip() for c in _DEVICE_COLUMNS.split(','))},"
    # changed_at travels as text: SQLite's JSON prints REALs with only 15 digits.
    " (SELECT json_group_object(p.name, json_array(json(p.value), printf('%!.17g', p.changed_at)))"
    "  FROM device_properties p WHERE p.tenant_id = d.tenant_id AND p.device_id = d.id)"
    " FROM devices d"
)


def _load_device(conn: sqlite3.Connection, tenant_id: str, device_id: str) -> Device | None:
    """One device with its properties, in a single statement."""
    row = conn.execute(
        f"{_DEVICE_SELECT} WHERE d.tenant_id = ? AND d.id = ?", (tenant_id, device_id)
    ).fetchone()
    return None if row is None else _device(row)


def _current_device(
    conn: sqlite3.Connection, written: dict[Hashable, Any], tenant_id: str, device_id: str
) -> Device:
    """The device as the open write transaction sees it; ``NotFound`` when there is none.

    A change reads the device it changes, and the writer remembers each device it wrote:
    while the row's ``seq`` and ``version`` are still the ones remembered (every change
    bumps the version; a device deleted and made again gets a new seq), the remembered
    record is the row, and the cheap check spares the full read of it and its properties.
    """
    head = conn.execute(
        "SELECT seq, version FROM devices WHERE tenant_id = ? AND id = ?", (tenant_id, device_id)
    ).fetchone()
    if head is None:
        raise NotFound("no such device")
    remembered = written.get(("device", tenant_id, device_id))
    if (
        isinstance(remembered, Device)
        and remembered.seq == head[0]
        and remembered.version == head[1]
    ):
        return remembered
    device = _load_device(conn, tenant_id, device_id)
    if device is None:  # the row was just found in this transaction: only for the types
        raise NotFound("no such device")
    _remember_device(written, device)
    return device


def _remember_device(written: dict[Hashable, Any], device: Device) -> None:
    if len(written) >= WRITTEN_MAX:
        written.clear()
    written[("device", device.tenant_id, device.id)] = device


def _device(row: tuple[Any, ...]) -> Device:
    properties = {
        name: PropertyState(value=value, changed_at=float(changed_at))
        for name, (value, changed_at) in decode(row[11] or "{}").items()
    }
    return Device(
        seq=row[0],
        id=row[1],
        tenant_id=row[2],
        type=row[3],
        name=row[4],
        description=row[5],
        options={} if row[6] == "{}" else decode(row[6]),
        properties=properties,
        version=row[7],
        created_at=row[8],
        updated_at=row[9],
        room=row[10],
    )


def _activity(row: tuple[Any, ...]) -> ActivityEntry:
    return ActivityEntry(
        id=row[0],
        tenant_id=row[1],
        device_id=row[2],
        device_name=row[3],
        kind=row[4],
        source=row[5],
        actor=row[6],
        cause=row[7],
        property=row[8],
        old_value=_loads(row[9]),
        new_value=_loads(row[10]),
        detail=decode(row[11]) if row[11] else {},
        created_at=row[12],
    )


def _facts_of(device: Device) -> DeviceFacts:
    return DeviceFacts(
        device_id=device.id,
        type=device.type,
        options=device.options,
        version=device.version,
        tenant_id=device.tenant_id,
    )


def _webhook_params(webhook: Webhook) -> tuple[Any, ...]:
    return (
        webhook.id,
        webhook.tenant_id,
        webhook.url,
        webhook.description,
        None if webhook.device_ids is None else encode_sorted_text(list(webhook.device_ids)),
        None if webhook.event_types is None else encode_sorted_text(list(webhook.event_types)),
        int(webhook.enabled),
        webhook.secret_ciphertext,
        webhook.disabled_reason,
        webhook.created_at,
        webhook.updated_at,
        webhook.format,
        webhook.ifttt_event,
        webhook.ifttt_key_ciphertext,
    )


def _webhook_with_seq(webhook: Webhook, seq: int) -> Webhook:
    return dataclasses.replace(webhook, seq=seq)


def _load_webhook(conn: sqlite3.Connection, tenant_id: str, webhook_id: str) -> Webhook | None:
    row = conn.execute(
        f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ? AND id = ?",
        (tenant_id, webhook_id),
    ).fetchone()
    return _webhook(row) if row else None


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(
        seq=row[0],
        id=row[1],
        tenant_id=row[2],
        url=row[3],
        description=row[4],
        device_ids=None if row[5] is None else tuple(decode(row[5])),
        event_types=None if row[6] is None else tuple(decode(row[6])),
        enabled=bool(row[7]),
        secret_ciphertext=row[8],
        created_at=row[9],
        updated_at=row[10],
        disabled_reason=row[11],
        format=row[12],
        ifttt_event=row[13],
        ifttt_key_ciphertext=row[14],
    )
