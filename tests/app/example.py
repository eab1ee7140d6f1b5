"""A trivial integration, as docs/architecture.md ("Adding an integration") builds it.

It counts the state changes of each household (from core's event bus), publishes the counts
every ``interval`` seconds with a periodic task, serves them at ``GET /example/v1/counts``
on the API host (bearer credential, counted like API requests), shows them on a dashboard
card, and has a ``doctor`` check. Through the outbox it also hears of every state change,
in order per device, with a delivery policy and a sink of its own (its "destination" is a
list in memory). It touches no file of StateRelay: it is registered by handing
``create_app`` a registry with it (``integrations=(*BUILTIN, Example())``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from staterelay.app.integration import (
    Card,
    CardFacts,
    Integration,
    IntegrationContext,
    Parts,
    PeriodicTask,
    RateLimit,
    Surface,
)
from staterelay.core.delivery import (
    NOTHING,
    DeliveryPlan,
    DeliveryPolicy,
    DeviceFacts,
    InterestFacts,
    PlannedRow,
)
from staterelay.core.errors import NotAuthenticated
from staterelay.core.events import StateChanged
from staterelay.core.records import NewOutboxEvent, OutboxItem
from staterelay.core.sinks import SinkResult
from staterelay.ops.checks import Check
from staterelay.settings import Settings

PREFIX = "/example/v1/"
SINK = "example"


class ExamplePolicy:
    """Every state change is owed to the example sink, in order per device."""

    sink = SINK

    def plan(
        self, event: NewOutboxEvent, facts: InterestFacts, device: DeviceFacts, now: float
    ) -> DeliveryPlan:
        """One row per state change (never for a test send aimed at a webhook)."""
        if (
            event.event_type != "state.changed"
            or event.device_id is None
            or event.only_destination is not None
        ):
            return NOTHING
        row = PlannedRow(
            sink=SINK,
            destination="memory",
            ordering_key=f"{SINK}:{event.device_id}",
            event_type=event.event_type,
            device_id=event.device_id,
            payload=event.payload,
        )
        return DeliveryPlan(rows=(row,))


class ExampleSink:
    """Delivers by appending the row's payload to ``received``."""

    name = SINK

    def __init__(self, received: list[dict[str, Any]]) -> None:
        self.received = received

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """One attempt: always accepted."""
        self.received.append(dict(item.payload))
        return SinkResult(delivered=True, status_code=200)

    async def close(self) -> None:
        """Nothing to release."""


class Example(Integration):
    """Counts state changes per household."""

    name = "example"
    surfaces = (Surface(path=PREFIX, roles=("api",), limit=RateLimit.CREDENTIAL),)

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.contexts: list[IntegrationContext] = []
        self.published: dict[str, int] = {}
        self.snapshots = 0
        self.received: list[dict[str, Any]] = []

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Its sink hears of every state change."""
        return (ExamplePolicy(),)

    def doctor_checks(self, settings: Settings) -> Sequence[Check]:
        """One check: what it counts for."""
        return (Check("example", "OK", f"counts state changes at {settings.public_url}"),)

    def build(self, context: IntegrationContext) -> Parts:
        """A bus subscription while running, the snapshot task, the route and the card."""
        self.contexts.append(context)
        counts: Counter[str] = Counter()

        def count(event: StateChanged) -> None:
            counts[event.tenant_id] += 1

        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            unsubscribe = context.core.bus.subscribe(StateChanged, count)
            try:
                yield
            finally:
                unsubscribe()

        async def snapshot() -> None:
            self.published = dict(counts)
            self.snapshots += 1

        routes = web.RouteTableDef()

        @routes.get(f"{PREFIX}counts", name="example-counts")
        async def household_counts(request: web.Request) -> web.Response:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                raise NotAuthenticated("send an API key as 'Authorization: Bearer <key>'")
            principal = await context.core.auth.authenticate(token.strip())
            changes = self.published.get(principal.tenant_id, 0)
            return web.json_response({"household": principal.tenant_id, "state_changes": changes})

        async def card_view(facts: CardFacts) -> dict[str, Any]:
            changes = self.published.get(facts.principal.tenant_id, 0)
            return {
                "state": "linked" if changes else "off",
                "label": f"{changes} counted",
                "text": "State changes of your household, published every moment.",
                "facts": [("State changes", changes)],
            }

        card = Card(
            key="example", title="Example counter", name="Example", icon="switch", view=card_view
        )
        return Parts(
            routes=routes,
            sinks=(ExampleSink(self.received),),
            periodic=(PeriodicTask("example-snapshot", self.interval, snapshot),),
            cards=(card,),
            running=running,
        )
