"""The Alexa part of the store interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from staterelay.core.records.alexa import AlexaGrant, AlexaReportNote


class AlexaStore(Protocol):
    """Persistence for the Alexa integration."""

    async def save_alexa_grant(self, grant: AlexaGrant) -> AlexaGrant:
        """Store a user's new grant, replacing any earlier one and its undelivered events."""

    async def get_alexa_grant(self, tenant_id: str, grant_id: str) -> AlexaGrant | None:
        """One grant of a tenant, active or unlinked."""

    async def find_user_alexa_grant(self, tenant_id: str, user_id: str) -> AlexaGrant | None:
        """The user's grant, active or unlinked, if they ever linked."""

    async def update_alexa_tokens(
        self,
        tenant_id: str,
        grant_id: str,
        *,
        access_token_ciphertext: str,
        refresh_token_ciphertext: str,
        expires_at: float,
        refreshed_at: float,
    ) -> bool:
        """Store refreshed tokens and clear the token error; False unless the grant is active."""

    async def note_alexa_token_error(
        self, tenant_id: str, grant_id: str, error: str, at: float
    ) -> None:
        """Remember the latest token problem of a grant."""

    async def unlink_alexa_grant(
        self, tenant_id: str, grant_id: str, reason: str, at: float
    ) -> bool:
        """Drop an active grant's tokens and undelivered events and say why; False if none."""

    async def record_alexa_reports(self, notes: Sequence[AlexaReportNote]) -> None:
        """Write the latest report result of each grant named (missing grants are skipped)."""
