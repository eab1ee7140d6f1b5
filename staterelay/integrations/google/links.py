"""Google Home link state per user, kept in core's integration records.

A user is *linked* from their first SYNC (Google sends it right after account linking) until
Google's DISCONNECT, a revoke in StateRelay, or a 404 from Home Graph (Google no longer knows
the ``agentUserId``). The link is a record of kind ``link`` keyed by the user id, which is
also the ``agentUserId`` (stable, never an e-mail address); the delivery policy reads the
household's links from the interest facts. An ended link leaves a ``gone`` record saying why.
Report results are remembered in memory and written every few seconds, as Alexa's are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from staterelay.core import Core
from staterelay.core.records.integrations import IntegrationRecord

INTEGRATION: Final = "google"
SINK: Final = "google"
GONE_KIND: Final = "gone"
ERROR_MAX: Final = 300

UNLINKED_BY_GOOGLE: Final = "Google sent DISCONNECT (unlinked in the Google Home app)"
UNLINKED_IN_STATERELAY: Final = "the linked app was revoked in StateRelay"
UNKNOWN_TO_GOOGLE: Final = "Home Graph no longer knows this user (404)"


@dataclass(frozen=True, slots=True)
class ReportNote:
    """The latest Home Graph answer for one user."""

    tenant_id: str
    user_id: str
    at: float
    accepted: bool
    status_code: int | None
    error: str | None
    kind: str  # "report" or "sync"


class GoogleLinks:
    """Reads and ends users' Google Home links; remembers report results until flushed."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._notes: dict[tuple[str, str, str], ReportNote] = {}

    async def link(self, tenant_id: str, user_id: str) -> IntegrationRecord | None:
        """The user's active link, or None."""
        return await self._core.integrations.link_of(tenant_id, INTEGRATION, user_id)

    async def active(self, tenant_id: str, user_id: str) -> IntegrationRecord | None:
        """The user's link while the linked app it came with is not revoked.

        A grant revoked without its listener hearing (the client deleted, a listener that
        failed) ends the link here at the latest, so nothing more is sent for it.
        """
        record = await self.link(tenant_id, user_id)
        if record is None:
            return None
        grant_id = record.data.get("grant_id")
        if grant_id is None:
            return record
        grants = await self._core.oauth.list_user_grants(tenant_id, user_id)
        if any(grant.grant_id == grant_id for grant in grants):
            return record
        await self.end(tenant_id, user_id, UNLINKED_IN_STATERELAY)
        return None

    async def gone(self, tenant_id: str, user_id: str) -> IntegrationRecord | None:
        """Why the user's link ended, if it did and they have not linked again."""
        return await self._core.integrations.get(tenant_id, INTEGRATION, GONE_KIND, user_id)

    async def synced(self, tenant_id: str, user_id: str, grant_id: str) -> None:
        """A SYNC came with the user's token: they are linked (again), as of now."""
        now = self._core.clock()
        if await self._core.integrations.merge(
            tenant_id,
            INTEGRATION,
            "link",
            user_id,
            {"grant_id": grant_id, "last_sync_at": now},
        ):
            return
        await self._core.integrations.link(
            tenant_id,
            INTEGRATION,
            user_id,
            {"grant_id": grant_id, "linked_at": now, "last_sync_at": now},
        )
        await self._core.integrations.delete(tenant_id, INTEGRATION, GONE_KIND, user_id)

    async def end(self, tenant_id: str, user_id: str, reason: str) -> bool:
        """End the user's link at once: pending rows dropped, nothing sent after."""
        ended = await self._core.integrations.unlink(
            tenant_id, INTEGRATION, user_id, pending_sink=SINK
        )
        for key in [key for key in self._notes if key[:2] == (tenant_id, user_id)]:
            del self._notes[key]
        if ended:
            await self._core.integrations.put(
                tenant_id,
                INTEGRATION,
                GONE_KIND,
                user_id,
                {"reason": reason[:ERROR_MAX], "at": self._core.clock()},
            )
        return ended

    def note(
        self,
        tenant_id: str,
        user_id: str,
        *,
        kind: str,
        accepted: bool,
        status_code: int | None,
        error: str | None,
    ) -> None:
        """Remember Home Graph's latest answer for a user; ``flush`` writes it."""
        self._notes[(tenant_id, user_id, kind)] = ReportNote(
            tenant_id=tenant_id,
            user_id=user_id,
            at=self._core.clock(),
            accepted=accepted,
            status_code=status_code,
            error=None if error is None else error[:ERROR_MAX],
            kind=kind,
        )

    async def flush(self) -> int:
        """Write the remembered results into the users' link records; returns how many."""
        notes, self._notes = self._notes, {}
        for note in notes.values():
            changes: dict[str, Any] = {
                f"last_{note.kind}_at": note.at,
                f"last_{note.kind}_status": note.status_code,
                f"last_{note.kind}_error": note.error,
            }
            if note.accepted:
                changes[f"last_{note.kind}_accepted_at"] = note.at
            await self._core.integrations.merge(
                note.tenant_id, INTEGRATION, "link", note.user_id, changes
            )
        return len(notes)

    def pending(self, tenant_id: str, user_id: str) -> Mapping[str, Any]:
        """Results not written yet, as ``flush`` would write them (for status answers)."""
        merged: dict[str, Any] = {}
        for kind in ("report", "sync"):
            note = self._notes.get((tenant_id, user_id, kind))
            if note is None:
                continue
            merged[f"last_{kind}_at"] = note.at
            merged[f"last_{kind}_status"] = note.status_code
            merged[f"last_{kind}_error"] = note.error
            if note.accepted:
                merged[f"last_{kind}_accepted_at"] = note.at
        return merged
