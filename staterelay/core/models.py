"""The records adapters see: the store's frozen dataclasses plus the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass

from staterelay.store.records import (
    ActivityEntry,
    ApiKey,
    DeliveryOutcome,
    Device,
    NewActivity,
    OutboxItem,
    OutboxStats,
    Page,
    PropertyState,
    Tenant,
    User,
    Webhook,
    WebhookDelivery,
)

SOURCES = ("api", "ui", "alexa", "ifttt", "webhook", "cli", "system")
SCOPES = ("read", "write")


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


__all__ = [
    "SCOPES",
    "SOURCES",
    "ActivityEntry",
    "ApiKey",
    "DeliveryOutcome",
    "Device",
    "NewActivity",
    "OutboxItem",
    "OutboxStats",
    "Page",
    "Principal",
    "PropertyState",
    "Tenant",
    "User",
    "Webhook",
    "WebhookDelivery",
]
