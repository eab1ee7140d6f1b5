"""OutboxService: what the dispatcher claims, and where delivery results are recorded."""

from __future__ import annotations

from collections.abc import Sequence

from staterelay.core.billing import UsageCounter
from staterelay.core.bus import EventBus
from staterelay.core.clock import Clock
from staterelay.core.events import ActivityRecorded
from staterelay.core.records import DeliveryOutcome, OutboxClaim, OutboxStats
from staterelay.core.storage import Store


class OutboxService:
    """The dispatcher's door to the outbox."""

    def __init__(
        self, store: Store, bus: EventBus, clock: Clock, *, usage: UsageCounter | None = None
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._usage = usage

    async def claim(self, owner: str, *, lease_seconds: float, limit: int) -> OutboxClaim:
        """Lease claimable rows to ``owner``; also says when the next row falls due."""
        return await self._store.claim_outbox(owner, self._clock(), lease_seconds, limit)

    async def renew(self, owner: str, ids: Sequence[int], *, lease_seconds: float) -> set[int]:
        """Extend ``owner``'s leases on ``ids`` by ``lease_seconds`` from now; returns the ids
        it still holds (the others were recorded meanwhile or taken by another owner)."""
        return await self._store.renew_outbox_leases(owner, ids, self._clock() + lease_seconds)

    async def record(self, outcomes: Sequence[DeliveryOutcome], *, owner: str) -> set[int]:
        """Store the results of rows ``owner`` still holds and announce the activity rows
        they add; returns the ids recorded (a row whose lease was lost is left alone)."""
        tenants = {o.item.id: o.item.tenant_id for o in outcomes if o.activity is not None}

        def announce(written: set[int]) -> None:  # once the activity rows can be read
            for tenant_id in sorted({tenants[i] for i in written if i in tenants}):
                self._bus.publish(ActivityRecorded(tenant_id=tenant_id))

        recorded = await self._store.record_deliveries(
            outcomes, self._clock(), owner=owner, on_written=announce
        )
        if self._usage is not None and self._usage.enabled:
            for outcome in outcomes:
                if outcome.delivered and outcome.item.id in recorded:
                    self._usage.delivered(outcome.item.tenant_id)
        return recorded

    async def release(self, owner: str | None) -> int:
        """Free leases of ``owner`` (or all)."""
        return await self._store.release_leases(owner)

    async def next_due(self) -> float | None:
        """When the next pending row is due."""
        return await self._store.next_outbox_due()

    async def stats(self) -> OutboxStats:
        """Outbox depth and age."""
        return await self._store.outbox_stats()
