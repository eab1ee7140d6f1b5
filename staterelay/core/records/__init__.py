"""The domain's records: frozen dataclasses core works with and the store persists, and the
principal of a request. Plain data, no behaviour, no driver rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from staterelay.core.records.quick_init import quick_init

JSONValue = Any
T = TypeVar("T")


@quick_init
@dataclass(frozen=True, slots=True)
class Tenant:
    """A household (self-hosted) or a customer account (hosted)."""

    id: str
    name: str
    created_at: float


@quick_init
@dataclass(frozen=True, slots=True)
class User:
    """A person who signs in; belongs to exactly one tenant."""

    id: str
    tenant_id: str
    email: str
    is_admin: bool
    created_at: float
    password_hash: str | None = field(default=None, repr=False)


@quick_init
@dataclass(frozen=True, slots=True)
class ApiKey:
    """A personal API key; only the SHA-256 digest of the secret is stored."""

    id: str
    tenant_id: str
    user_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    device_ids: tuple[str, ...] | None = None  # None: every device of the tenant


@quick_init
@dataclass(frozen=True, slots=True)
class PropertyState:
    """One property's value and when it last changed."""

    value: JSONValue
    changed_at: float


@quick_init
@dataclass(frozen=True, slots=True)
class Device:
    """A virtual device with its current properties and version counter."""

    seq: int
    id: str
    tenant_id: str
    type: str
    name: str
    description: str
    options: Mapping[str, JSONValue]
    properties: Mapping[str, PropertyState]
    version: int
    created_at: float
    updated_at: float
    room: str = ""


@quick_init
@dataclass(frozen=True, slots=True)
class NewActivity:
    """An activity row to write inside a change's transaction."""

    kind: str
    source: str
    actor: str | None
    cause: str | None = None
    property: str | None = None
    old_value: JSONValue = None
    new_value: JSONValue = None
    detail: Mapping[str, JSONValue] | None = None
    device_id: str | None = None
    device_name: str | None = None

    def stored(self, *, entry_id: int, tenant_id: str, at: float) -> ActivityEntry:
        """This row as the log holds it once written with ``entry_id`` at ``at``."""
        return ActivityEntry(
            id=entry_id,
            tenant_id=tenant_id,
            device_id=self.device_id,
            device_name=self.device_name,
            kind=self.kind,
            source=self.source,
            actor=self.actor,
            cause=self.cause,
            property=self.property,
            old_value=self.old_value,
            new_value=self.new_value,
            detail=dict(self.detail or {}),
            created_at=at,
        )


@quick_init
@dataclass(frozen=True, slots=True)
class ActivityEntry:
    """A row of the activity log."""

    id: int
    tenant_id: str
    device_id: str | None
    device_name: str | None
    kind: str
    source: str
    actor: str | None
    cause: str | None
    property: str | None
    old_value: JSONValue
    new_value: JSONValue
    detail: Mapping[str, JSONValue]
    created_at: float


@quick_init
@dataclass(frozen=True, slots=True)
class NewOutboxEvent:
    """An event of a change; core's planner decides which sinks owe a delivery of it."""

    event_type: str
    device_id: str | None
    payload: Mapping[str, JSONValue]
    only_destination: str | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed outbox row: one event for one destination of one sink."""

    id: int
    tenant_id: str
    sink: str
    destination: str
    event_id: str
    event_type: str
    device_id: str | None
    payload: Mapping[str, JSONValue]
    attempts: int
    created_at: float
    ordering_key: str = ""
    mergeable: bool = False


@quick_init
@dataclass(frozen=True, slots=True)
class OutboxClaim:
    """Rows leased by one claim, and when the next row not claimed now may be (None: no
    row is pending)."""

    items: Sequence[OutboxItem]
    next_due: float | None


@quick_init
@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What happened to one delivery attempt; the store records it in one transaction.

    A row ends delivered, merged (``merged_into``: the event id of the row whose report
    carried its change; nothing was sent for it) or dead; otherwise it waits until
    ``next_attempt_at``, and so do the rows of its ordering key behind it.
    """

    item: OutboxItem
    delivered: bool
    dead: bool
    next_attempt_at: float | None
    status_code: int | None
    error: str | None
    duration_ms: float
    activity: NewActivity | None
    merged_into: str | None = None

    @property
    def status(self) -> str:
        """The row's status once this outcome is recorded."""
        if self.merged_into is not None:
            return "merged"
        if self.delivered:
            return "delivered"
        return "dead" if self.dead else "pending"


@quick_init
@dataclass(frozen=True, slots=True)
class Webhook:
    """A user's webhook endpoint; the signing secret is kept encrypted.

    ``format`` is ``standard`` (signed event JSON) or ``ifttt_webhooks`` (IFTTT's Webhooks
    trigger: ``value1``-``value3`` for the event ``ifttt_event``, with an encrypted key).
    """

    seq: int
    id: str
    tenant_id: str
    url: str
    description: str
    device_ids: tuple[str, ...] | None
    event_types: tuple[str, ...] | None
    enabled: bool
    secret_ciphertext: str = field(repr=False)
    created_at: float
    updated_at: float
    disabled_reason: str | None = None
    format: str = "standard"
    ifttt_event: str | None = None
    ifttt_key_ciphertext: str | None = field(default=None, repr=False)


@quick_init
@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One attempt to deliver an event to a webhook."""

    id: int
    tenant_id: str
    webhook_id: str
    event_id: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    created_at: float


@quick_init
@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth and age of undelivered outbox rows."""

    pending: int
    dead: int
    oldest_pending_at: float | None


@quick_init
@dataclass(frozen=True, slots=True)
class PoolStats:
    """This process's database connections: open, allowed, busy, and callers waiting.

    ``waiting`` counts writes queued for SQLite's single writer; None where the engine
    does not say (asyncpg keeps its waiters private).
    """

    size: int
    max_size: int
    in_use: int
    waiting: int | None


@quick_init
@dataclass(frozen=True, slots=True)
class StorageStats:
    """Room for the database: free bytes where the store can tell (None for a server the
    store reaches over the network), and writes refused for lack of space so far."""

    free_bytes: int | None
    full_errors: int


@quick_init
@dataclass(frozen=True, slots=True)
class DeviceChange:
    """What a mutator decided: new property values, activity rows and outbox events."""

    properties: Mapping[str, JSONValue] = field(default_factory=dict)
    activity: tuple[NewActivity, ...] = ()
    events: tuple[NewOutboxEvent, ...] = ()
    name: str | None = None
    description: str | None = None
    options: Mapping[str, JSONValue] | None = None
    room: str | None = None

    @property
    def is_empty(self) -> bool:
        """True when nothing would be written."""
        return (
            not self.properties
            and not self.activity
            and not self.events
            and self.name is None
            and self.description is None
            and self.options is None
            and self.room is None
        )


@quick_init
@dataclass(frozen=True, slots=True)
class CommittedChange:
    """The outcome of a committed device change."""

    before: Device
    after: Device
    activity: tuple[ActivityEntry, ...]
    outbox_rows: int


DeviceMutator = Callable[[Device], DeviceChange]
"""Runs inside the store's transaction with the current device; raises a domain error to abort."""


@quick_init
@dataclass(frozen=True, slots=True)
class DeviceRemoval:
    """What deleting a device records: its activity row, and the events it owes."""

    activity: NewActivity
    events: tuple[NewOutboxEvent, ...]


DeviceRemover = Callable[[Device], DeviceRemoval]
"""Runs inside the store's transaction with the device as it is; may refuse by raising."""

WebhookMutator = Callable[[Webhook], Webhook]
"""Runs inside the store's transaction with the current webhook and returns the new one."""


@quick_init
@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """A page of a newest-first list and the cursor of the next page."""

    items: tuple[T, ...]
    next_cursor: str | None


SOURCES = ("api", "ui", "alexa", "ifttt", "webhook", "cli", "system")
SCOPES = ("read", "write")


@quick_init
@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, the user, how they authenticated and what they may do."""

    tenant_id: str
    user_id: str
    scopes: frozenset[str]
    credential: str
    credential_id: str
    client_id: str | None = None
    device_ids: frozenset[str] | None = None  # a device-scoped API key; None: every device

    def can(self, scope: str) -> bool:
        """True when the principal holds ``scope`` (``write`` implies ``read``)."""
        return scope in self.scopes or (scope == "read" and "write" in self.scopes)

    def reaches(self, device_id: str) -> bool:
        """True when the principal may see ``device_id`` (its tenant's, if it exists)."""
        return self.device_ids is None or device_id in self.device_ids

    @property
    def actor(self) -> str:
        """How activity rows name this principal."""
        return f"{self.credential}:{self.credential_id}"
