"""The accounts part of the store interface: sessions, passwords, sign-up, invites, setup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from staterelay.core.records import Tenant, User
from staterelay.core.records.accounts import Invite, PasswordReset, Session


class AccountStore(Protocol):
    """Persistence for accounts; secrets arrive as SHA-256 digests only."""

    # sessions ------------------------------------------------------------------------------
    async def create_session(self, session: Session, digest: str) -> Session:
        """Insert a session whose cookie secret has this digest."""

    async def find_session(self, digest: str) -> tuple[Session, User] | None:
        """Cross-tenant: the session with this digest and its user, expired or not."""

    async def touch_session(self, tenant_id: str, session_id: str, at: float) -> None:
        """Record that the session was used at ``at`` (never moves backwards)."""

    async def list_sessions(self, tenant_id: str, user_id: str) -> Sequence[Session]:
        """A user's sessions, most recently used first."""

    async def delete_session(
        self, tenant_id: str, session_id: str, *, user_id: str | None = None
    ) -> bool:
        """Delete a session (only the user's own when ``user_id`` is given); False if absent."""

    async def prune_sessions(self, *, idle_before: float, now: float) -> int:
        """Cross-tenant: delete sessions unused since ``idle_before`` or expired at ``now``."""

    # passwords -----------------------------------------------------------------------------
    async def rehash_password(
        self, tenant_id: str, user_id: str, old_hash: str, new_hash: str
    ) -> bool:
        """Replace the hash only while it still is ``old_hash``; False when it changed."""

    async def change_password(
        self, tenant_id: str, user_id: str, new_hash: str, *, keep_session_id: str | None
    ) -> int:
        """Set the hash and delete the user's other sessions; returns how many were deleted.

        ``NotFound`` when the tenant has no such user.
        """

    # sign-up -------------------------------------------------------------------------------
    async def create_tenant_with_admin(self, tenant: Tenant, user: User) -> User:
        """Insert a tenant and its first user together; ``Conflict`` when the email is taken."""

    async def set_setup_token(self, digest: str | None) -> None:
        """Keep the digest of the one-time setup token (None forgets it)."""

    async def setup_token_digest(self) -> str | None:
        """The digest of the current setup token, if any."""

    async def create_first_admin(self, digest: str, tenant: Tenant, user: User) -> User:
        """Consume the setup token and create the instance's first user, in one transaction.

        The user joins the oldest tenant, or ``tenant`` (inserted) when there is none; the
        stored user carries that tenant's id. ``NotFound`` when ``digest`` is not the stored
        setup token's or any user exists already.
        """

    # instance facts ------------------------------------------------------------------------
    async def instance_fact(self, key: str) -> str | None:
        """An instance-wide fact (no tenant): a first-seen time, a sealed credential."""

    async def set_instance_fact(self, key: str, value: str | None) -> None:
        """Keep an instance-wide fact (None forgets it)."""

    # password resets -----------------------------------------------------------------------
    async def create_password_reset(self, reset: PasswordReset, digest: str) -> PasswordReset:
        """Insert a reset link whose token has this digest."""

    async def find_password_reset(self, digest: str) -> PasswordReset | None:
        """Cross-tenant: the reset with this digest, used or expired included."""

    async def use_password_reset(
        self, digest: str, tenant_id: str, new_hash: str, now: float
    ) -> User:
        """Use a reset link up: set the user's password and end every session of the user.

        One transaction; ``NotFound`` when the link is unknown, used, or expired at ``now``.
        """

    async def list_users(self, tenant_id: str | None = None) -> Sequence[User]:
        """Every user (of one tenant, or of the instance), oldest first."""

    async def set_password(self, tenant_id: str, user_id: str, new_hash: str) -> int:
        """Set a user's password and end every session; returns how many ended."""

    # invites -------------------------------------------------------------------------------
    async def create_invite(self, invite: Invite, digest: str) -> Invite:
        """Insert an invite whose link token has this digest."""

    async def find_invite(self, digest: str) -> Invite | None:
        """Cross-tenant: the invite with this digest, used or expired included."""

    async def accept_invite(self, digest: str, user: User, now: float) -> User:
        """Create ``user`` in the invite's tenant and mark the invite used, in one transaction.

        ``NotFound`` when the invite is unknown, used, expired at ``now`` or of another tenant
        than ``user``; ``Conflict`` when the email is taken (the invite stays unused).
        """

    async def list_invites(self, tenant_id: str, *, now: float) -> Sequence[Invite]:
        """A tenant's unused, unexpired invites, newest first."""

    async def revoke_invite(self, tenant_id: str, invite_id: str) -> bool:
        """Delete an unused invite of the tenant; False when there is none."""
