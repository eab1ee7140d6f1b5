"""Hosted billing's rules: plans, a household's effective plan, limits, suspensions and usage.

With ``billing.enabled`` false (self-hosted) nothing here limits or counts anything. When it
is on, every household is on the free plan unless Stripe says it pays for another; a
``past_due`` subscription keeps its plan for ``grace_days``. Over a plan's device limit no
device is deleted: the household keeps the devices it chose (else the oldest) active and the
others are suspended (listed with their history, refused with ``PlanLimit`` on changes,
unreachable for Alexa) until it upgrades or makes room.

Usage (state changes and deliveries per household and calendar month, UTC) is counted in
memory and flushed to the store by a periodic task and at shutdown: a crash loses at most one
interval's counts, and a change costs no extra database round trip.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from staterelay.core.clock import Clock, iso
from staterelay.core.errors import Forbidden, InvalidInput, NotFound, PlanLimit, PlanRateLimited
from staterelay.core.ratelimit import MemoryRateLimiter, RateLimiter
from staterelay.core.records import Device, NewActivity, Principal
from staterelay.core.records.billing import NO_SUBSCRIPTION, Subscription, Usage
from staterelay.core.storage import Store
from staterelay.settings import FREE_PLAN, BillingSettings, PlanSettings

_LOGGER = logging.getLogger(__name__)

DAY = 86400.0
MINUTE = 60.0
CACHE_SECONDS = 5.0
"""How long a household's plan and suspensions are remembered between reads; another
replica's change reaches this one within it."""
PAID_STATUSES = frozenset({"active", "trialing"})
LIVE_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete", "paused"})
"""Subscription statuses a customer can still act on (the others are ended)."""
CACHE_MAX = 10_000
"""Households remembered at once (all forgotten when full)."""
SUSPENDED_LIMIT = "suspended_device"
_DEVICE_BATCH = 200


def month_of(ts: float) -> str:
    """The calendar month (UTC) of an epoch time: ``2026-12``."""
    return time.strftime("%Y-%m", time.gmtime(ts))


@dataclass(frozen=True, slots=True)
class StripeSubscription:
    """What Stripe says about a customer's subscription (the newest one, or none)."""

    customer_id: str
    subscription_id: str | None
    lookup_key: str | None
    status: str
    current_period_end: float | None
    cancel_at_period_end: bool


@dataclass(frozen=True, slots=True)
class HouseholdPlan:
    """A household's plan as it applies now.

    ``plan`` gives the limits in force; ``subscribed`` is the plan the subscription pays for
    (the free plan without one). ``grace_until`` is set while a failed renewal keeps the
    paid plan, until that time.
    """

    plan: PlanSettings
    subscribed: PlanSettings
    subscription: Subscription | None
    suspended: frozenset[str]
    grace_until: float | None

    @property
    def status(self) -> str:
        """Stripe's subscription status, or ``none``."""
        return self.subscription.status if self.subscription else NO_SUBSCRIPTION

    @property
    def customer_id(self) -> str | None:
        """The household's Stripe customer, once it has one."""
        return self.subscription.customer_id if self.subscription else None

    @property
    def live(self) -> bool:
        """True while a subscription exists that the customer manages in the portal."""
        return self.status in LIVE_STATUSES


@dataclass(frozen=True, slots=True)
class BillingOverview:
    """What the Billing page and ``GET /api/v1/billing`` show."""

    household: HouseholdPlan
    devices: int
    webhooks: int
    usage: Usage
    plans: Sequence[PlanSettings]


class UsageCounter:
    """State changes and deliveries per household and month, counted in memory."""

    def __init__(self, store: Store, clock: Clock, *, enabled: bool) -> None:
        self._store = store
        self._clock = clock
        self.enabled = enabled
        self._pending: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])

    def state_changed(self, tenant_id: str) -> None:
        """Count one state change (a press counts too)."""
        if self.enabled:
            self._pending[tenant_id, month_of(self._clock())][0] += 1

    def delivered(self, tenant_id: str, count: int = 1) -> None:
        """Count deliveries that reached their destination."""
        if self.enabled and count:
            self._pending[tenant_id, month_of(self._clock())][1] += count

    def pending(self, tenant_id: str, month: str) -> tuple[int, int]:
        """Counts of this process not yet flushed."""
        found = self._pending.get((tenant_id, month))
        return (found[0], found[1]) if found else (0, 0)

    async def flush(self) -> int:
        """Add the counts to the store, one transaction per household; returns households
        written. Counts whose write fails are kept for the next flush."""
        batch, self._pending = self._pending, defaultdict(lambda: [0, 0])
        written = 0
        try:
            while batch:
                (tenant_id, month), (changes, deliveries) = next(iter(batch.items()))
                await self._store.add_usage(
                    tenant_id, month, state_changes=changes, deliveries=deliveries
                )
                del batch[tenant_id, month]
                written += 1
        finally:
            for key, (changes, deliveries) in batch.items():
                counts = self._pending[key]
                counts[0] += changes
                counts[1] += deliveries
        return written


class BillingService:
    """Plans and limits of hosted billing; does nothing while billing is off."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: BillingSettings,
        *,
        public_url: str,
        usage: UsageCounter,
    ) -> None:
        self._store = store
        self._clock = clock
        self.settings = settings
        self.enabled = settings.enabled
        self.usage = usage
        self.plans: tuple[PlanSettings, ...] = settings.plans
        self.free_plan = next((p for p in settings.plans if p.lookup_key is None), FREE_PLAN)
        self.upgrade_url = f"{public_url}/dashboard/billing"
        self._cache: dict[str, tuple[float, HouseholdPlan]] = {}
        self._limiter: RateLimiter = MemoryRateLimiter()

    def share_limiter(self, limiter: RateLimiter) -> None:
        """Count API requests per plan with ``limiter`` (Redis's when replicas share one)."""
        self._limiter = limiter

    # plans ---------------------------------------------------------------------------------
    def plan(self, key: str) -> PlanSettings | None:
        """The configured plan with this key."""
        return next((p for p in self.plans if p.key == key), None)

    def plan_for_lookup_key(self, lookup_key: str | None) -> PlanSettings | None:
        """The paid plan whose Stripe price has this lookup key."""
        if lookup_key is None:
            return None
        return next((p for p in self.plans if p.lookup_key == lookup_key), None)

    def effective_plan(self, subscription: Subscription | None, now: float) -> HouseholdPlan:
        """The plan a stored subscription grants at ``now`` (suspensions not included)."""
        subscribed = self.free_plan
        if subscription is not None:
            subscribed = self.plan(subscription.plan_key) or self.free_plan
        status = subscription.status if subscription else NO_SUBSCRIPTION
        grace_until = None
        plan = self.free_plan
        if status in PAID_STATUSES:
            plan = subscribed
        elif status == "past_due" and subscription is not None:
            since = subscription.past_due_since or subscription.updated_at
            grace_until = since + self.settings.grace_days * DAY
            if now < grace_until:
                plan = subscribed
        return HouseholdPlan(
            plan=plan,
            subscribed=subscribed,
            subscription=subscription,
            suspended=frozenset(),
            grace_until=grace_until,
        )

    # the household's state -----------------------------------------------------------------
    async def household(self, tenant_id: str, *, fresh: bool = False) -> HouseholdPlan:
        """The household's plan and suspended devices, remembered for ``CACHE_SECONDS``.

        When the plan in force is not the one the suspensions were computed for (a grace
        period ended, the plans changed), they are computed again and stored.
        """
        now = self._clock()
        hit = self._cache.get(tenant_id)
        if hit is not None and not fresh and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        state = await self._store.billing_state(tenant_id)
        current = self.effective_plan(state.subscription, now)
        enforced = state.subscription.enforced_plan if state.subscription else None
        if enforced != current.plan.key:
            await self._enforce(tenant_id, state.subscription, current, state.suspended)
            state = await self._store.billing_state(tenant_id)
            current = self.effective_plan(state.subscription, now)
        household = replace(current, suspended=state.suspended)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[tenant_id] = (now, household)
        return household

    def forget(self, tenant_id: str) -> None:
        """Read the household's billing again next time (after a change of it)."""
        self._cache.pop(tenant_id, None)

    # limits --------------------------------------------------------------------------------
    async def check_new_device(self, tenant_id: str, count: int) -> None:
        """``PlanLimit`` when a household with ``count`` devices may not add one."""
        if not self.enabled:
            return
        plan = (await self.household(tenant_id)).plan
        if count >= plan.limits.devices:
            raise PlanLimit(
                f"the {plan.name} plan allows {plan.limits.devices} devices; upgrade to add more",
                limit="devices",
                upgrade_url=self.upgrade_url,
            )

    async def check_new_webhook(self, tenant_id: str, count: int) -> None:
        """``PlanLimit`` when a household with ``count`` webhooks may not add one."""
        if not self.enabled:
            return
        plan = (await self.household(tenant_id)).plan
        allowed = plan.limits.webhooks if "webhooks" in plan.limits.integrations else 0
        if count >= allowed:
            raise PlanLimit(
                f"the {plan.name} plan allows {allowed} webhooks; upgrade to add more",
                limit="webhooks",
                upgrade_url=self.upgrade_url,
            )

    async def check_integration(self, tenant_id: str, integration: str) -> None:
        """``PlanLimit`` when the household's plan does not include ``integration``."""
        if not self.enabled:
            return
        plan = (await self.household(tenant_id)).plan
        if integration not in plan.limits.integrations:
            raise PlanLimit(
                f"the {plan.name} plan does not include {integration}; upgrade to use it",
                limit=f"integration:{integration}",
                upgrade_url=self.upgrade_url,
            )

    async def check_device_active(self, tenant_id: str, device_id: str) -> None:
        """``PlanLimit`` for a change of a device the plan suspended."""
        if self.enabled and await self.is_suspended(tenant_id, device_id):
            raise PlanLimit(
                "this device is suspended: the household has more devices than its plan"
                " allows; upgrade, or choose it among the active ones on the Billing page",
                limit=SUSPENDED_LIMIT,
                upgrade_url=self.upgrade_url,
            )

    async def check_api_request(self, principal: Principal) -> None:
        """Count one API request of the credential; ``PlanRateLimited`` past the plan's
        ``api_per_minute`` (0: no plan limit)."""
        if not self.enabled:
            return
        plan = (await self.household(principal.tenant_id)).plan
        limit = plan.limits.api_per_minute
        if not limit:
            return
        wait = await self._limiter.hit("plan-api", principal.credential_id, limit, MINUTE)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise PlanRateLimited(
                f"the {plan.name} plan allows {limit} API requests a minute per credential;"
                f" try again in {seconds} seconds, or upgrade",
                retry_after=seconds,
                upgrade_url=self.upgrade_url,
            )

    async def prune_activity(self) -> int:
        """Delete activity older than each household's plan keeps; returns rows gone."""
        if not self.enabled:
            return 0
        now = self._clock()
        cuts = {plan.key: now - plan.limits.retention_days * DAY for plan in self.plans}
        return await self._store.prune_activity_by_plan(cuts, default=cuts[self.free_plan.key])

    async def is_suspended(self, tenant_id: str, device_id: str) -> bool:
        """True when billing suspended the device."""
        if not self.enabled:
            return False
        return device_id in (await self.household(tenant_id)).suspended

    # what the household sees ---------------------------------------------------------------
    async def overview(self, principal: Principal) -> BillingOverview:
        """The plan, its status, limits and this month's usage (``NotFound`` when off)."""
        if not self.enabled:
            raise NotFound("billing is not enabled on this instance")
        tenant_id = principal.tenant_id
        household = await self.household(tenant_id)
        month = month_of(self._clock())
        stored = await self._store.get_usage(tenant_id, month)
        changes, deliveries = self.usage.pending(tenant_id, month)
        usage = Usage(
            month=month,
            state_changes=stored.state_changes + changes,
            deliveries=stored.deliveries + deliveries,
        )
        devices = await self._store.count_devices(tenant_id)
        webhooks = len(await self._store.list_webhooks(tenant_id, after_seq=None, limit=1000))
        return BillingOverview(
            household=household,
            devices=devices,
            webhooks=webhooks,
            usage=usage,
            plans=self.plans,
        )

    async def device_allowance(self, principal: Principal) -> tuple[int, PlanSettings] | None:
        """How many devices the household has and the plan whose limit applies (None: off)."""
        if not self.enabled:
            return None
        plan = (await self.household(principal.tenant_id)).plan
        return await self._store.count_devices(principal.tenant_id), plan

    async def keep_devices(self, principal: Principal, device_ids: Sequence[str]) -> None:
        """A household admin chooses which devices stay active when over the device limit."""
        if not self.enabled:
            raise NotFound("billing is not enabled on this instance")
        await self.require_admin(principal)
        household = await self.household(principal.tenant_id, fresh=True)
        devices = await self._devices(principal.tenant_id)
        known = {device.id for device in devices}
        chosen = tuple(dict.fromkeys(d for d in device_ids if d in known))
        if len(chosen) > household.plan.limits.devices:
            raise InvalidInput(
                f"the {household.plan.name} plan keeps at most"
                f" {household.plan.limits.devices} devices active",
                field="keep",
            )
        state = await self._store.billing_state(principal.tenant_id)
        subscription = state.subscription or self._blank(principal.tenant_id)
        subscription = replace(subscription, kept_devices=chosen)
        await self._enforce(
            principal.tenant_id,
            subscription,
            self.effective_plan(subscription, self._clock()),
            state.suspended,
            devices=devices,
        )

    async def device_removed(self, tenant_id: str) -> None:
        """A device was deleted: a suspended one may take its place."""
        if not self.enabled:
            return
        household = await self.household(tenant_id, fresh=True)
        if household.suspended:
            await self._enforce(tenant_id, household.subscription, household, household.suspended)
            self.forget(tenant_id)

    async def require_admin(self, principal: Principal) -> None:
        """``Forbidden`` unless the principal is a household admin signed in as a person."""
        user = await self._store.get_user(principal.tenant_id, principal.user_id)
        if user is None or not user.is_admin or principal.credential == "oauth":
            raise Forbidden("only a household admin may manage billing")

    # Stripe's word -------------------------------------------------------------------------
    async def save_customer(self, tenant_id: str, customer_id: str) -> str:
        """Keep the household's Stripe customer (the first one wins); returns the kept one."""
        kept = await self._store.save_customer(tenant_id, customer_id, self._clock())
        self.forget(tenant_id)
        return kept

    async def tenant_for_customer(self, customer_id: str) -> str | None:
        """The household of a Stripe customer (the webhook's only cross-tenant read)."""
        return await self._store.tenant_for_customer(customer_id)

    async def event_seen(self, tenant_id: str, event_id: str) -> bool:
        """True when this Stripe event was processed for the household already."""
        return await self._store.stripe_event_seen(tenant_id, event_id)

    async def apply(
        self, tenant_id: str, stripe: StripeSubscription, *, event_id: str | None = None
    ) -> bool:
        """Apply what Stripe says now: plan and status in one transaction with an activity
        entry (and the event id, processed once), the device limits recomputed with it.

        Returns False when the event was processed before (nothing written).
        """
        now = self._clock()
        state = await self._store.billing_state(tenant_id)
        old = state.subscription
        plan = self.plan_for_lookup_key(stripe.lookup_key) if stripe.subscription_id else None
        if plan is None and stripe.subscription_id and stripe.status in LIVE_STATUSES:
            _LOGGER.warning(
                "subscription %s of household %s has a price with lookup key %r that no plan"
                " in billing.plans names; the household gets the free plan until one does",
                stripe.subscription_id,
                tenant_id,
                stripe.lookup_key,
            )
        past_due_since = None
        if stripe.status == "past_due":
            past_due_since = now
            if old is not None and old.status == "past_due" and old.past_due_since:
                past_due_since = old.past_due_since
        new = Subscription(
            tenant_id=tenant_id,
            plan_key=(plan or self.free_plan).key,
            status=stripe.status,
            customer_id=stripe.customer_id,
            subscription_id=stripe.subscription_id,
            current_period_end=stripe.current_period_end,
            cancel_at_period_end=stripe.cancel_at_period_end,
            past_due_since=past_due_since,
            enforced_plan=old.enforced_plan if old else None,
            kept_devices=old.kept_devices if old else (),
            updated_at=now,
        )
        activity: list[NewActivity] = []
        if old is None or (old.plan_key, old.status, old.cancel_at_period_end) != (
            new.plan_key,
            new.status,
            new.cancel_at_period_end,
        ):
            activity.append(
                NewActivity(
                    kind="billing.changed",
                    source="system",
                    actor="stripe",
                    detail={
                        "plan": new.plan_key,
                        "status": new.status,
                        "cancel_at_period_end": new.cancel_at_period_end,
                        "current_period_end": iso(new.current_period_end),
                    },
                )
            )
        current = self.effective_plan(new, now)
        devices = await self._devices(tenant_id)
        suspended, changes = self._suspensions(
            devices, current.plan, new.kept_devices, state.suspended
        )
        written = await self._store.save_billing(
            replace(new, enforced_plan=current.plan.key),
            activity=(*activity, *changes),
            suspended=suspended,
            event_id=event_id,
            now=now,
        )
        self.forget(tenant_id)
        return written

    # suspensions ---------------------------------------------------------------------------
    async def _enforce(
        self,
        tenant_id: str,
        subscription: Subscription | None,
        current: HouseholdPlan,
        suspended_now: frozenset[str],
        *,
        devices: Sequence[Device] | None = None,
    ) -> None:
        """Compute and store the suspensions the plan in force calls for."""
        subscription = subscription or self._blank(tenant_id)
        if devices is None:
            devices = await self._devices(tenant_id)
        suspended, changes = self._suspensions(
            devices, current.plan, subscription.kept_devices, suspended_now
        )
        await self._store.save_billing(
            replace(subscription, enforced_plan=current.plan.key),
            activity=changes,
            suspended=suspended,
            now=self._clock(),
        )
        self.forget(tenant_id)

    def _suspensions(
        self,
        devices: Sequence[Device],
        plan: PlanSettings,
        kept: Sequence[str],
        suspended_now: frozenset[str],
    ) -> tuple[list[str], list[NewActivity]]:
        """Which devices to suspend under ``plan``, and the activity rows saying what moved.

        The household's chosen devices stay active first, then the oldest, up to the limit.
        """
        limit = plan.limits.devices
        by_id = {device.id: device for device in devices}
        active = [d for d in kept if d in by_id][:limit]
        for device in devices:  # creation order: the oldest first
            if len(active) >= limit:
                break
            if device.id not in active:
                active.append(device.id)
        keep = set(active)
        suspended = [device.id for device in devices if device.id not in keep]
        changes = [
            NewActivity(
                kind="device.suspended" if device.id in suspended else "device.resumed",
                source="system",
                actor="billing",
                device_id=device.id,
                device_name=device.name,
                detail={"plan": plan.key, "device_limit": limit},
            )
            for device in devices
            if (device.id in suspended) != (device.id in suspended_now)
        ]
        return suspended, changes

    async def _devices(self, tenant_id: str) -> list[Device]:
        found: list[Device] = []
        after: int | None = None
        while True:
            batch = await self._store.list_devices(tenant_id, after_seq=after, limit=_DEVICE_BATCH)
            found.extend(batch)
            if len(batch) < _DEVICE_BATCH:
                return found
            after = batch[-1].seq

    def _blank(self, tenant_id: str) -> Subscription:
        return Subscription(
            tenant_id=tenant_id, plan_key=self.free_plan.key, updated_at=self._clock()
        )
