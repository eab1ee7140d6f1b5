"""``GET /billing``: the household's plan, its status, its limits and this month's usage.

Only on hosted instances with ``billing.enabled``; elsewhere it answers 404.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from staterelay.api.auth import principal_of
from staterelay.api.responses import json_response
from staterelay.app.appkeys import CORE_KEY
from staterelay.core.billing import BillingOverview
from staterelay.core.clock import iso
from staterelay.settings import PlanSettings

routes = web.RouteTableDef()

_TIME_OR_NULL: Final = {"type": ["string", "null"], "format": "date-time"}
_COUNT: Final = {"type": "integer", "minimum": 0}
_LIMITS: Final = {
    "type": "object",
    "required": ["devices", "webhooks", "api_per_minute", "retention_days", "integrations"],
    "properties": {
        "devices": _COUNT,
        "webhooks": _COUNT,
        "api_per_minute": _COUNT,
        "retention_days": _COUNT,
        "integrations": {"type": "array", "items": {"type": "string"}},
    },
}

SCHEMAS: Final[dict[str, Any]] = {
    "Billing": {
        "type": "object",
        "required": [
            "plan",
            "subscribed_plan",
            "status",
            "current_period_end",
            "cancel_at_period_end",
            "grace_until",
            "limits",
            "usage",
            "suspended_devices",
        ],
        "properties": {
            "plan": {"type": "string", "description": "The key of the plan whose limits apply."},
            "subscribed_plan": {
                "type": "string",
                "description": "The plan the subscription pays for (the free plan without one).",
            },
            "status": {
                "type": "string",
                "description": "Stripe's subscription status (active, past_due, canceled, ...)"
                " or none.",
            },
            "current_period_end": {
                **_TIME_OR_NULL,
                "description": "When the subscription renews, or ends when cancel_at_period_end.",
            },
            "cancel_at_period_end": {"type": "boolean"},
            "grace_until": {
                **_TIME_OR_NULL,
                "description": "While a renewal payment fails: when the free limits apply.",
            },
            "limits": _LIMITS,
            "usage": {
                "type": "object",
                "required": ["month", "devices", "webhooks", "state_changes", "deliveries"],
                "properties": {
                    "month": {"type": "string", "description": "The calendar month (UTC)."},
                    "devices": _COUNT,
                    "webhooks": _COUNT,
                    "state_changes": _COUNT,
                    "deliveries": _COUNT,
                },
            },
            "suspended_devices": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Devices over the plan's limit: kept with their history,"
                " refused with 402 plan_limit on changes until the household upgrades or"
                " makes room.",
            },
        },
    }
}


def limits_json(plan: PlanSettings) -> dict[str, Any]:
    """A plan's limits as JSON."""
    limits = plan.limits
    return {
        "devices": limits.devices,
        "webhooks": limits.webhooks,
        "api_per_minute": limits.api_per_minute,
        "retention_days": limits.retention_days,
        "integrations": list(limits.integrations),
    }


def billing_json(overview: BillingOverview) -> dict[str, Any]:
    """The JSON of a household's billing overview."""
    household = overview.household
    subscription = household.subscription
    return {
        "plan": household.plan.key,
        "subscribed_plan": household.subscribed.key,
        "status": household.status,
        "current_period_end": iso(subscription.current_period_end if subscription else None),
        "cancel_at_period_end": bool(subscription and subscription.cancel_at_period_end),
        "grace_until": iso(household.grace_until),
        "limits": limits_json(household.plan),
        "usage": {
            "month": overview.usage.month,
            "devices": overview.devices,
            "webhooks": overview.webhooks,
            "state_changes": overview.usage.state_changes,
            "deliveries": overview.usage.deliveries,
        },
        "suspended_devices": sorted(household.suspended),
    }


@routes.get("/billing", name="billing", allow_head=False)
async def billing(request: web.Request) -> web.Response:
    """The caller's household plan, limits and usage (404 when billing is off)."""
    overview = await request.app[CORE_KEY].billing.overview(principal_of(request))
    return json_response(billing_json(overview))
