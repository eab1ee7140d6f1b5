"""Records of the Alexa integration: per-user Login with Amazon grants and report results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AlexaRegion = Literal["NA", "EU", "FE"]
GrantStatus = Literal["active", "unlinked"]


@dataclass(frozen=True, slots=True)
class AlexaGrant:
    """One user's permission for StateRelay to send events to Alexa (from AcceptGrant).

    The tokens are ciphertexts (``SecretBox``); an unlinked grant has none and says why.
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


@dataclass(frozen=True, slots=True)
class AlexaReportNote:
    """The result of the latest event sent to Alexa for a grant (202 or the gateway's error)."""

    tenant_id: str
    grant_id: str
    at: float
    status_code: int | None
    error: str | None
