"""Records of the OAuth authorization server: clients, codes, grants and tokens.

Secrets never appear here in the clear: client secrets, codes and tokens are stored and
looked up by their SHA-256 digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ClientSource = Literal["config", "cli"]
AuthMethod = Literal["client_secret_basic", "client_secret_post"]
TokenKind = Literal["access", "refresh"]
CodeOutcome = Literal["issued", "reused", "invalid"]
RotateOutcome = Literal["rotated", "lost", "revoked", "superseded"]


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A registered OAuth client (instance-wide): the Alexa skill, the IFTTT service, an app."""

    id: str
    name: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: AuthMethod
    scopes: tuple[str, ...]
    source: ClientSource
    created_at: float
    secret_digest: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class OAuthCode:
    """An authorization code awaiting exchange, stored by digest."""

    digest: str
    tenant_id: str
    user_id: str
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    scopes: tuple[str, ...]
    code_challenge: str | None
    code_challenge_method: str | None
    created_at: float
    expires_at: float
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class OAuthGrant:
    """One user's authorization of one client: the family every token of a link belongs to."""

    id: str
    tenant_id: str
    user_id: str
    client_id: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class LinkedApp:
    """A grant as its user sees it: which client, since when, last used, what it may do."""

    grant_id: str
    client_id: str
    client_name: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True, slots=True)
class NewOAuthToken:
    """A token to insert: its digest and what it is."""

    digest: str
    kind: TokenKind
    scopes: tuple[str, ...]
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """A stored access or refresh token joined with its grant."""

    digest: str
    kind: TokenKind
    tenant_id: str
    user_id: str
    grant_id: str
    client_id: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    rotated_at: float | None
    grant_revoked_at: float | None
    successor: str | None = field(default=None, repr=False)

    @property
    def revoked(self) -> bool:
        """True when the token or its whole grant has been revoked."""
        return self.revoked_at is not None or self.grant_revoked_at is not None


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a refresh did to the old refresh token, and its successor when another won."""

    outcome: RotateOutcome
    successor: str | None = field(default=None, repr=False)
