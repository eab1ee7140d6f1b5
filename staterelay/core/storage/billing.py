"""The billing part of the store interface: subscriptions, Stripe events, usage, suspensions,
and a household's deletion when it leaves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from staterelay.core.records import NewActivity
from staterelay.core.records.billing import BillingState, Subscription, Usage


class BillingStore(Protocol):
    """Persistence for hosted billing; every method but the customer lookup is per tenant."""

    async def billing_state(self, tenant_id: str) -> BillingState:
        """The household's subscription row (None before any) and its suspended devices."""

    async def save_billing(
        self,
        subscription: Subscription,
        *,
        activity: Sequence[NewActivity] = (),
        suspended: Sequence[str] | None = None,
        event_id: str | None = None,
        now: float,
    ) -> bool:
        """In one transaction: record ``event_id`` as processed (if given), replace the
        household's subscription row, write ``activity`` and, unless None, replace the set of
        suspended devices. False, and nothing written, when ``event_id`` was processed
        before."""

    async def save_customer(self, tenant_id: str, customer_id: str, now: float) -> str:
        """Keep ``customer_id`` as the household's Stripe customer unless it has one; returns
        the one kept (so two concurrent checkouts agree on one customer)."""

    async def stripe_event_seen(self, tenant_id: str, event_id: str) -> bool:
        """True when the Stripe event was processed for this household."""

    async def tenant_for_customer(self, customer_id: str) -> str | None:
        """Cross-tenant: the household whose Stripe customer this is (the webhook's lookup)."""

    async def add_usage(
        self, tenant_id: str, month: str, *, state_changes: int, deliveries: int
    ) -> None:
        """Add to the household's counts of ``month`` (``YYYY-MM``, UTC)."""

    async def get_usage(self, tenant_id: str, month: str) -> Usage:
        """The household's counts of ``month`` (zeros when nothing was counted)."""

    async def prune_activity_by_plan(
        self, older_than: Mapping[str, float], *, default: float
    ) -> int:
        """Cross-tenant: delete activity older than its household's plan allows.

        ``older_than`` maps a plan key to the cut-off of the households whose enforced plan
        it is; ``default`` applies to households without a billing row. Returns rows gone.
        """

    async def delete_tenant(self, tenant_id: str) -> int:
        """Delete the household and every row of it, in every table that has a
        ``tenant_id`` (the integrations' too), in one transaction; returns rows deleted."""
