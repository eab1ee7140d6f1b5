"""The IFTTT part of the store interface: timelines, thresholds, identities, request ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from staterelay.core.records.ifttt import IftttEvent, IftttPruned, Threshold, TriggerIdentity


class IftttStore(Protocol):
    """Persistence for the IFTTT integration.

    Timeline events are written by the fan-out inside every device change's transaction,
    so an event exists exactly when its change committed.
    """

    async def configure_ifttt_realtime(
        self, *, enabled: bool, debounce_seconds: float, now: float
    ) -> None:
        """Tell the fan-out whether to queue Realtime notifications, and their window."""

    async def list_ifttt_events(
        self, tenant_id: str, device_id: str, kind: str, variant: str, *, limit: int
    ) -> Sequence[IftttEvent]:
        """One timeline, newest first: at most ``limit`` events, read through its index."""

    async def track_ifttt_threshold(
        self, tenant_id: str, device_id: str, threshold: Threshold, now: float, *, limit: int
    ) -> int | None:
        """Start (or keep) recording crossings of a threshold; returns crossings backfilled.

        A newly tracked threshold gets the crossings in the device's recorded readings that
        its timeline does not hold yet, so its first poll already shows them. None, and
        nothing tracked, when the device already has ``limit`` thresholds.
        """

    async def save_ifttt_identity(self, identity: TriggerIdentity) -> None:
        """Insert or refresh an identity (its fields, last poll); undeletes a deleted one."""

    async def delete_ifttt_identity(
        self, tenant_id: str, user_id: str, identity: str, now: float
    ) -> bool:
        """Mark a user's identity deleted; False when there is no such live identity."""

    async def forget_ifttt_user(self, tenant_id: str, user_id: str, now: float) -> int:
        """IFTTT was unlinked: mark the user's identities deleted and drop their queued
        Realtime notifications; returns how many identities were live."""

    async def list_ifttt_identities(
        self, tenant_id: str, user_id: str | None = None
    ) -> Sequence[TriggerIdentity]:
        """A tenant's (or one user's) identities, deleted ones included, oldest first."""

    async def find_ifttt_action(
        self, tenant_id: str, user_id: str, action: str, request_id: str
    ) -> str | None:
        """The result id of an action request already carried out, or None."""

    async def record_ifttt_action(
        self, tenant_id: str, user_id: str, action: str, request_id: str, result: str, now: float
    ) -> None:
        """Remember that an action request was carried out, and its result id."""

    async def prune_ifttt(
        self,
        *,
        events_before: float,
        keep_events: int,
        identities_before: float,
        requests_before: float,
    ) -> IftttPruned:
        """Drop old events (but never the newest ``keep_events`` of a timeline), identities
        and thresholds unused since a time, and old request ids."""
