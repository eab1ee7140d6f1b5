"""Records of hosted billing: a household's subscription state and its monthly usage."""

from __future__ import annotations

from dataclasses import dataclass, field

NO_SUBSCRIPTION = "none"
"""The status of a household that never subscribed (or whose customer has no subscription)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """A household's billing state: its Stripe customer and subscription as last synced, and
    the limits StateRelay last enforced.

    ``plan_key`` is the plan the subscription pays for (the free plan's key without one);
    ``status`` is Stripe's subscription status, or ``none``. ``enforced_plan`` is the plan
    whose limits the device suspensions were computed for, and ``kept_devices`` the devices
    the household chose to keep active when over a limit (oldest first otherwise).
    """

    tenant_id: str
    plan_key: str
    status: str = NO_SUBSCRIPTION
    customer_id: str | None = None
    subscription_id: str | None = None
    current_period_end: float | None = None
    cancel_at_period_end: bool = False
    past_due_since: float | None = None
    enforced_plan: str | None = None
    kept_devices: tuple[str, ...] = ()
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class BillingState:
    """What the store holds of one household's billing: its row (if any) and the devices
    suspended for being over the plan's device limit."""

    subscription: Subscription | None
    suspended: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Usage:
    """A household's counts for one calendar month (UTC), ``YYYY-MM``."""

    month: str
    state_changes: int = 0
    deliveries: int = 0
