"""Counters of what this process did: state changes, delivery attempts, OAuth token errors.

Core and the adapters count here, at the source and after the fact is settled (a change
after its commit, a delivery once its outcome is known). Nothing here knows Prometheus:
the metrics endpoint reads the counts when it is scraped. Each ``Core`` has its own
``Counters``, so two applications in one process never share a count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

# Label values come from code, never from a request, so the label sets stay small; anything
# else is counted as "other".
DELIVERY_OUTCOMES = frozenset({"delivered", "merged", "retry", "dead"})
OAUTH_TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "insecure_transport",
    }
)
LIVE_CAPS = frozenset({"credential", "household"})
MAX_LABEL_VALUES = 64


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """One delivery attempt's labels: the sink, its outcome, and whether a request was made."""

    sink: str
    outcome: str
    sent: bool


@dataclass
class Counters:
    """Monotonic counts of one process's events, by label."""

    state_changes: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[DeliveryKey] = field(default_factory=Counter)
    oauth_token_errors: Counter[str] = field(default_factory=Counter)
    live_refusals: Counter[str] = field(default_factory=Counter)
    live_connections: int = 0
    """Live feeds open right now (a gauge, kept here so metrics need not know the UI)."""

    def state_changed(self, source: str) -> None:
        """A committed change of a device's state, made from ``source`` (api, alexa, ...)."""
        self.state_changes[_bounded(self.state_changes, source)] += 1

    def delivery(self, sink: str, outcome: str, *, sent: bool) -> None:
        """One delivery attempt's outcome; ``sent`` when the destination answered it."""
        label = outcome if outcome in DELIVERY_OUTCOMES else "other"
        key = DeliveryKey(sink, label, sent)
        if key not in self.deliveries and len(self.deliveries) >= MAX_LABEL_VALUES:
            key = DeliveryKey("other", label, sent)
        self.deliveries[key] += 1

    def oauth_token_error(self, error: str) -> None:
        """The token endpoint answered an OAuth error (``invalid_grant``, ...)."""
        self.oauth_token_errors[error if error in OAUTH_TOKEN_ERRORS else "other"] += 1

    def live_refused(self, cap: str) -> None:
        """A live feed was refused at a cap (``credential`` or ``household``)."""
        self.live_refusals[cap if cap in LIVE_CAPS else "other"] += 1

    def deliveries_of(self, sink: str) -> Mapping[str, int]:
        """Attempts of one sink by outcome."""
        by_outcome: Counter[str] = Counter()
        for key, count in self.deliveries.items():
            if key.sink == sink:
                by_outcome[key.outcome] += count
        return by_outcome


def _bounded(counts: Mapping[str, int], label: str) -> str:
    """``label``, or "other" once a counter already has ``MAX_LABEL_VALUES`` label values."""
    if label in counts or len(counts) < MAX_LABEL_VALUES:
        return label
    return "other"
