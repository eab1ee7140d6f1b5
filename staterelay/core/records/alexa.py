"""Records of the Alexa integration: per-user Login with Amazon grants and report results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

AlexaRegion = Literal["NA", "EU", "FE"]
GrantStatus = Literal["active", "unlinked"]


@dataclass(frozen=True, slots=True)
class AlexaGrant:
    """One user's permission for StateRelay to send events to Alexa (from AcceptGrant).

    The tokens are ciphertexts (``SecretBox``); an unlinked grant has none and says why.
    ``oauth_grant_id`` is StateRelay's own linked-app grant whose token accepted it (None
    for grants made before it was kept).
    """

    id: str
    tenant_id: str
    user_id: str
    region: AlexaRegion
    status: GrantStatus
    access_token_ciphertext: str | None = field(repr=False)
    refresh_token_ciphertext: str | None = field(repr=False)
    token_expires_at: float | None
    linked_at: float
    refreshed_at: float | None = None
    token_error: str | None = None
    token_error_at: float | None = None
    last_report_at: float | None = None
    last_report_status: int | None = None
    last_report_error: str | None = None
    unlinked_at: float | None = None
    unlinked_reason: str | None = None
    oauth_grant_id: str | None = None
    oauth_grant_revoked: bool = False
    """Read, not stored: the linked app whose token made this grant has been revoked since."""


_STORED_FIELDS = tuple(f.name for f in fields(AlexaGrant) if f.name != "oauth_grant_revoked")


def grant_from_row(row: Sequence[Any]) -> AlexaGrant:
    """A grant from its stored columns (in field order) followed by the revoked flag."""
    stored = dict(zip(_STORED_FIELDS, row, strict=False))
    return AlexaGrant(**stored, oauth_grant_revoked=bool(row[len(_STORED_FIELDS)]))


@dataclass(frozen=True, slots=True)
class AlexaReportNote:
    """The result of the latest event sent to Alexa for a grant (202 or the gateway's error)."""

    tenant_id: str
    grant_id: str
    at: float
    status_code: int | None
    error: str | None
