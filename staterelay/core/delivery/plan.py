"""What the planner decides and the store carries out: interest facts in, a delivery plan out.

``InterestFacts`` is what a household's changes must reach (its linked Alexa accounts,
webhooks, IFTTT watches and thresholds); the store reads them and tells core their
``version``, which changes whenever any of them does, so a plan made from cached facts is
refused when they went stale. ``DeliveryPlan`` is what one change owes: outbox rows (each
maybe merged into a queued row instead) and IFTTT timeline events. The store applies a plan
in the change's own transaction; the rules that make it live here, in core, written once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from staterelay.core.records import NewOutboxEvent
from staterelay.core.records.ifttt import Threshold, TimelineEntry
from staterelay.core.records.quick_init import quick_init


@quick_init
@dataclass(frozen=True, slots=True)
class WebhookInterest:
    """An enabled webhook and its filters (None: every event type, every device)."""

    webhook_id: str
    event_types: frozenset[str] | None = None
    device_ids: frozenset[str] | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class IftttWatch:
    """A live IFTTT trigger identity: whose, on which device, which timeline it follows."""

    user_id: str
    identity: str
    device_id: str
    kind: str
    threshold: Threshold | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class InterestFacts:
    """Everything a household's changes must be delivered to, as the planner needs it.

    ``version`` moves whenever a grant, webhook, identity, threshold, IFTTT link or
    integration link of the household changes; the Realtime settings are the instance's.
    ``links`` are the integration links (records of kind ``link``): integration name -> the
    keys linked (for Google Home, the user ids of the household that linked it).
    """

    version: int = 0
    alexa_grants: tuple[str, ...] = ()
    webhooks: tuple[WebhookInterest, ...] = ()
    ifttt_linked: bool = False
    ifttt_watches: tuple[IftttWatch, ...] = ()
    thresholds: Mapping[str, tuple[Threshold, ...]] = field(default_factory=dict)
    realtime_enabled: bool = False
    realtime_debounce: float = 1.0
    links: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@quick_init
@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """The device a change is about, as the change leaves it (None fields: it is gone)."""

    device_id: str
    type: str | None
    options: Mapping[str, Any]
    version: int | None
    tenant_id: str = ""
    """Its household (empty where the store does not say: deletes, test sends)."""


MergeKind = Literal["tail", "waiting"]


@quick_init
@dataclass(frozen=True, slots=True)
class Merge:
    """How a planned row may be merged into a queued row of its key instead of being added.

    ``tail``: into the key's newest pending row, if it is mergeable, untried and not leased;
    that row's ``device_version`` becomes ``version`` (its report will carry this change).
    ``waiting``: into the key's newest pending row of the same device that is untried, not
    leased and not due yet, by adding ``identities`` to its list, while the list stays
    within ``limit``.
    """

    kind: MergeKind
    version: int | None = None
    identities: tuple[str, ...] = ()
    limit: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class PlannedRow:
    """One outbox row a change owes (unless its ``merge`` finds a row to join)."""

    sink: str
    destination: str
    ordering_key: str
    event_type: str
    device_id: str | None
    payload: Mapping[str, Any]
    mergeable: bool = False
    due_at: float | None = None
    merge: Merge | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class TimelineEvent(TimelineEntry):
    """An IFTTT trigger timeline event, and the threshold variants the reading crossed
    (each becomes an event of its own on that threshold's timeline)."""

    crossed: tuple[str, ...] = ()

    @classmethod
    def of(cls, entry: TimelineEntry, crossed: tuple[str, ...] = ()) -> TimelineEvent:
        """``entry`` with the thresholds it crossed."""
        return cls(**{f.name: getattr(entry, f.name) for f in fields(entry)}, crossed=crossed)


@quick_init
@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What one change owes: outbox rows and IFTTT timeline events."""

    rows: tuple[PlannedRow, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()

    def __add__(self, other: DeliveryPlan) -> DeliveryPlan:
        # Most policies owe nothing for most events: adding nothing makes no new plan.
        if not (other.rows or other.timeline):
            return self
        if not (self.rows or self.timeline):
            return other
        return DeliveryPlan(self.rows + other.rows, self.timeline + other.timeline)


NOTHING: DeliveryPlan = DeliveryPlan()

Planner = Callable[[Sequence[NewOutboxEvent], InterestFacts, DeviceFacts, float], DeliveryPlan]
"""Core's rules as the store calls them inside a change: events, facts, device, now -> plan."""
