"""The OAuth part of the store interface: clients, codes, grants and tokens by digest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from staterelay.core.records.oauth import (
    CodeOutcome,
    LinkedApp,
    NewOAuthToken,
    OAuthClient,
    OAuthCode,
    OAuthGrant,
    OAuthToken,
    Rotation,
)


class OAuthStore(Protocol):
    """Persistence for the OAuth authorization server.

    Clients are instance-wide; codes, grants and tokens belong to a tenant. Lookups by digest
    cross tenants on purpose: a bearer secret names its own tenant.
    """

    # clients -------------------------------------------------------------------------------
    async def create_oauth_client(self, client: OAuthClient) -> OAuthClient:
        """Insert a client; ``Conflict`` when the id is taken."""

    async def upsert_oauth_client(self, client: OAuthClient) -> OAuthClient:
        """Insert a client or replace its settings and secret digest, keeping ``created_at``."""

    async def get_oauth_client(self, client_id: str) -> OAuthClient | None:
        """One client by id."""

    async def list_oauth_clients(self) -> Sequence[OAuthClient]:
        """Every client, oldest first."""

    async def delete_oauth_client(self, client_id: str) -> bool:
        """Delete a client with its codes, grants and tokens; False when there is none."""

    # codes ---------------------------------------------------------------------------------
    async def save_oauth_code(self, code: OAuthCode) -> None:
        """Insert an authorization code (by digest)."""

    async def get_oauth_code(self, digest: str) -> OAuthCode | None:
        """The code with this digest, used or not, expired or not."""

    async def exchange_oauth_code(
        self,
        digest: str,
        client_id: str,
        grant: OAuthGrant,
        tokens: Sequence[NewOAuthToken],
        now: float,
    ) -> CodeOutcome:
        """In one transaction: consume the code and insert ``grant`` with its first tokens.

        The code is consumed only if it is unused, unexpired and the client's
        (``UPDATE ... WHERE used_at IS NULL``), so of two concurrent exchanges one wins.
        ``reused`` when the code had been used: the grant its first use created is revoked and
        nothing is inserted. ``invalid`` when it is unknown, expired or another client's.
        """

    async def revoke_reused_oauth_code(self, digest: str, now: float) -> bool:
        """A used code was presented again: revoke the grant its exchange created."""

    # tokens and grants ---------------------------------------------------------------------
    async def get_oauth_token(self, digest: str) -> OAuthToken | None:
        """Cross-tenant: the access or refresh token with this digest, with its grant."""

    async def reissue_oauth_refresh(
        self,
        digest: str,
        rotated_at: float,
        successor: str,
        tokens: Sequence[NewOAuthToken],
        now: float,
    ) -> Rotation:
        """In one transaction: rotate an already rotated refresh token again, for clients
        whose old refresh token stays valid until its successor is used.

        ``superseded`` when a successor of the token was used (it rotated): the old token is
        no longer valid. Otherwise the unused successor refresh token is revoked, the token's
        ``rotated_at``/``successor`` become ``now``/``successor`` and ``tokens`` are
        inserted (``rotated``); ``lost`` with the winner's successor when a concurrent
        reissue moved ``rotated_at`` first; ``revoked`` when the token or grant was revoked.
        """

    async def rotate_oauth_refresh(
        self, digest: str, successor: str, tokens: Sequence[NewOAuthToken], now: float
    ) -> Rotation:
        """In one transaction: mark a refresh token rotated and insert its successor tokens.

        ``successor`` (ciphertext) is kept on the old row for the grace window. ``lost`` when
        another refresh rotated it first (its successor is returned and nothing is
        inserted); ``revoked`` when the token or its grant is revoked or gone.
        """

    async def revoke_oauth_grant(
        self,
        tenant_id: str,
        grant_id: str,
        now: float,
        *,
        reason: str,
        user_id: str | None = None,
    ) -> bool:
        """Revoke a grant and every token in it; with ``user_id`` only that user's grant.

        False when there is no such active grant.
        """

    async def revoke_oauth_access_token(self, digest: str, now: float) -> bool:
        """Revoke one access token; False when it is unknown or revoked already."""

    async def list_oauth_grants(self, tenant_id: str, user_id: str) -> Sequence[LinkedApp]:
        """A user's active grants with their clients' names, newest first."""

    async def touch_oauth_grants(self, last_used: Mapping[str, float]) -> None:
        """Record last-used times (grant id -> time) in one write."""

    async def purge_oauth(self, *, successors_before: float, expired_before: float) -> int:
        """Drop successor pairs rotated before a time, and codes and access tokens that
        expired before another; returns rows changed."""
