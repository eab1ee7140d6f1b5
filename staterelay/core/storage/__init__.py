"""The storage port core talks to: domain methods, one transaction each, frozen records.

Every method that touches tenant data takes the tenant id first and never returns another
tenant's rows. The few lookups that must cross tenants (an API key digest, a user's email for
sign-in, outbox claiming) are named for what they do. Implementations: ``sqlite.SQLiteStore``
(default) and a PostgreSQL one; ``tests/store`` holds the contract suite both must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from staterelay.core.delivery.plan import InterestFacts, Planner
from staterelay.core.records import (
    ActivityEntry,
    ApiKey,
    CommittedChange,
    DeliveryOutcome,
    Device,
    DeviceMutator,
    DeviceRemover,
    NewActivity,
    NewOutboxEvent,
    OutboxClaim,
    OutboxStats,
    PoolStats,
    StorageStats,
    Tenant,
    User,
    Webhook,
    WebhookDelivery,
    WebhookMutator,
)
from staterelay.core.storage.accounts import AccountStore
from staterelay.core.storage.alexa import AlexaStore
from staterelay.core.storage.billing import BillingStore
from staterelay.core.storage.ifttt import IftttStore
from staterelay.core.storage.integrations import IntegrationRecordStore
from staterelay.core.storage.leadership import LeadershipStore
from staterelay.core.storage.oauth import OAuthStore


class Store(
    AccountStore,
    OAuthStore,
    AlexaStore,
    IftttStore,
    BillingStore,
    IntegrationRecordStore,
    LeadershipStore,
    Protocol,
):
    """Persistence for StateRelay's domain."""

    # lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Finish queued writes, flush and release every connection and thread."""

    async def ready(self) -> bool:
        """True when the database answers and every migration is applied."""

    async def settings_report(self) -> Mapping[str, str]:
        """Engine facts worth showing an operator (journal mode, synchronous, version)."""

    # tenants and users ---------------------------------------------------------------------
    async def create_tenant(self, tenant: Tenant) -> Tenant:
        """Insert a tenant."""

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """One tenant by id."""

    async def first_tenant(self) -> Tenant | None:
        """The oldest tenant: the household of a self-hosted instance."""

    async def get_instance_marker(self, name: str) -> str | None:
        """A fact the instance keeps about itself (e.g. which household is IFTTT's test one)."""

    async def set_instance_marker(
        self, name: str, value: str, now: float, *, replacing: str | None = None
    ) -> str:
        """Keep ``value`` under ``name`` if what is kept there is ``replacing`` (None: nothing
        yet); returns the value kept afterwards, so two writers agree on one."""

    async def create_user(self, user: User) -> User:
        """Insert a user; ``Conflict`` when the email is taken (case-insensitively)."""

    async def get_user(self, tenant_id: str, user_id: str) -> User | None:
        """One user of a tenant."""

    async def find_user_by_email(self, email: str) -> User | None:
        """Cross-tenant: the user with this email (case-insensitive), for sign-in and the CLI."""

    async def count_users(self) -> int:
        """How many users the instance has."""

    # API keys ------------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey, digest: str) -> ApiKey:
        """Insert an API key with the SHA-256 digest of its secret."""

    async def find_api_key(self, digest: str) -> ApiKey | None:
        """Cross-tenant: the key whose secret has this digest, revoked or not."""

    async def list_api_keys(self, tenant_id: str, user_id: str) -> Sequence[ApiKey]:
        """A user's keys, newest first, revoked ones included."""

    async def revoke_api_key(self, tenant_id: str, user_id: str, key_id: str, at: float) -> bool:
        """Mark a key revoked; False when the user has no such key (or it was revoked)."""

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None:
        """Record last-used times (key id -> time) in one write."""

    # devices -------------------------------------------------------------------------------
    async def create_device(
        self,
        device: Device,
        activity: NewActivity,
        events: Sequence[NewOutboxEvent],
        *,
        plan: Planner,
    ) -> tuple[Device, ActivityEntry, int]:
        """Insert a device, its properties and an activity row, and apply the delivery plan
        ``plan`` makes for ``events`` from the household's interest facts, in one transaction.

        Returns the stored device, the activity entry and how many outbox rows were written.
        ``Conflict`` when the tenant has a device of that name (case-insensitively).
        """

    async def get_device(self, tenant_id: str, device_id: str) -> Device | None:
        """One device of a tenant."""

    async def list_devices(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[Device]:
        """A tenant's devices in creation order, after the given position."""

    async def count_devices(self, tenant_id: str) -> int:
        """How many devices a tenant has."""

    async def change_device(
        self, tenant_id: str, device_id: str, mutate: DeviceMutator, now: float, *, plan: Planner
    ) -> CommittedChange:
        """Run ``mutate`` on the current device and apply what it returns, with the delivery
        plan ``plan`` makes for the change's events, as one transaction.

        Property values that change bump the version. An empty change writes nothing. The
        store may run ``mutate`` on a device it remembers and again on the current one when
        that turned out stale: ``mutate`` must depend on nothing but its argument.
        ``NotFound`` when the tenant has no such device; ``Conflict`` on a duplicate name.
        """

    async def delete_device(
        self,
        tenant_id: str,
        device_id: str,
        remove: DeviceRemover,
        now: float,
        *,
        plan: Planner,
    ) -> tuple[Device, ActivityEntry, int]:
        """Delete a device as ``remove`` (run on the current device; it may refuse) decides,
        log it and apply the delivery plan of its events, in one transaction.

        ``NotFound`` when the tenant has no such device.
        """

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
        """Activity newest first, optionally for one device, some devices or a source."""

    async def prune_activity(self, older_than: float) -> int:
        """Delete activity and finished outbox rows older than a time; returns rows removed."""

    # webhooks ------------------------------------------------------------------------------
    async def create_webhook(self, webhook: Webhook) -> Webhook:
        """Insert a webhook."""

    async def get_webhook(self, tenant_id: str, webhook_id: str) -> Webhook | None:
        """One webhook of a tenant."""

    async def list_webhooks(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> Sequence[Webhook]:
        """A tenant's webhooks in creation order."""

    async def update_webhook(
        self, tenant_id: str, webhook_id: str, mutate: WebhookMutator
    ) -> Webhook:
        """Replace a webhook with what ``mutate`` returns, in one transaction; ``NotFound``."""

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        """Delete a webhook, its history and its undelivered rows."""

    async def enqueue_events(
        self, tenant_id: str, events: Sequence[NewOutboxEvent], now: float, *, plan: Planner
    ) -> int:
        """Apply the delivery plan of events outside a device change (a test send, say)."""

    async def interest_facts(self, tenant_id: str) -> InterestFacts:
        """What the household's changes are delivered to (for tools and tests)."""

    async def list_webhook_deliveries(
        self, tenant_id: str, webhook_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[WebhookDelivery]:
        """A webhook's delivery attempts, newest first."""

    # outbox --------------------------------------------------------------------------------
    async def claim_outbox(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> OutboxClaim:
        """Cross-tenant: lease up to ``limit`` claimable rows to ``owner`` (no row goes to two
        owners; rows of one ordering key go in order) and say when the next row falls due."""

    async def renew_outbox_leases(
        self, owner: str, ids: Sequence[int], lease_until: float
    ) -> set[int]:
        """Cross-tenant: extend ``owner``'s leases on ``ids`` to ``lease_until``.

        Only rows still pending and leased to ``owner`` are renewed; returns their ids (a
        row missing was recorded meanwhile, or its lease ran out and another owner took it).
        """

    async def record_deliveries(
        self,
        outcomes: Sequence[DeliveryOutcome],
        now: float,
        *,
        owner: str,
        on_written: Callable[[set[int]], None] | None = None,
    ) -> set[int]:
        """Record the results of delivery attempts (status, retry time, history, activity).

        Only rows still leased to ``owner`` are recorded: a late result from an owner that
        lost its lease (the row is another owner's, or was released or recorded meanwhile)
        writes nothing, so it never overwrites the new owner's. A row deleted meanwhile (its
        destination was removed) still gets its history and activity. Returns the ids of the
        outcomes recorded: from then on they are finished for the deliverer (the rows
        behind them may go). A store may write a sent row's result a moment later, sharing a
        commit (SQLite does); ``on_written`` is called with the ids whose results reached
        the disk, once or in parts, the last time when every result is there.
        """

    async def release_leases(self, owner: str | None) -> int:
        """Free the leases of one owner (or all, for a single-process engine at start)."""

    async def next_outbox_due(self) -> float | None:
        """When the earliest pending row becomes due, or None when nothing is pending."""

    async def outbox_stats(self) -> OutboxStats:
        """Pending and dead row counts and the oldest pending row's age."""

    def pool_stats(self) -> PoolStats:
        """This process's database connections right now (no query: cheap to scrape)."""

    def storage_stats(self) -> StorageStats:
        """Free space under the database where the store can see it, and refused writes."""
