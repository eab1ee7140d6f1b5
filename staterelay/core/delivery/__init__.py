"""Delivery rules: who must hear of a change, in which stream, and what may be merged.

Pure code, unit-tested without a database: the store reads a household's interest facts and
applies the plan the planner makes from them, in the change's own transaction.
"""

from __future__ import annotations

from staterelay.core.delivery.keys import alexa_key, ifttt_key, is_routine_trigger, webhook_key
from staterelay.core.delivery.plan import (
    NOTHING,
    DeliveryPlan,
    DeviceFacts,
    IftttWatch,
    InterestFacts,
    Merge,
    PlannedRow,
    Planner,
    TimelineEvent,
    WebhookInterest,
)
from staterelay.core.delivery.policies import (
    ALEXA_EVENT_TYPES,
    BUILT_IN_POLICIES,
    AlexaPolicy,
    DeliveryPlanner,
    DeliveryPolicy,
    IftttPolicy,
    WebhookPolicy,
    endpoint_reports,
)

__all__ = [
    "ALEXA_EVENT_TYPES",
    "BUILT_IN_POLICIES",
    "NOTHING",
    "AlexaPolicy",
    "DeliveryPlan",
    "DeliveryPlanner",
    "DeliveryPolicy",
    "DeviceFacts",
    "IftttPolicy",
    "IftttWatch",
    "InterestFacts",
    "Merge",
    "PlannedRow",
    "Planner",
    "TimelineEvent",
    "WebhookInterest",
    "WebhookPolicy",
    "alexa_key",
    "endpoint_reports",
    "ifttt_key",
    "is_routine_trigger",
    "webhook_key",
]
