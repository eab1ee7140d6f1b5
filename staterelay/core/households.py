"""Leaving: a household admin deletes the household, and with it every row it has."""

from __future__ import annotations

from staterelay.core.errors import Forbidden, InvalidInput
from staterelay.core.records import Principal
from staterelay.core.storage import Store


class HouseholdService:
    """The household as a whole."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def require_admin(self, principal: Principal) -> None:
        """``Forbidden`` unless a household admin acts in person (not a linked app or key)."""
        user = await self._store.get_user(principal.tenant_id, principal.user_id)
        if user is None or not user.is_admin or principal.credential != "session":
            raise Forbidden("only a household admin, signed in, may delete the household")

    async def confirm(self, principal: Principal, confirm_email: str) -> None:
        """Check that a household admin asked, and typed their own email address."""
        await self.require_admin(principal)
        user = await self._store.get_user(principal.tenant_id, principal.user_id)
        if user is None or confirm_email.strip().casefold() != user.email.casefold():
            raise InvalidInput("type your own email address to confirm", field="confirm")

    async def delete(self, principal: Principal, *, confirm_email: str) -> int:
        """Delete the household and all its rows (devices, history, accounts, keys, links,
        billing) after the admin typed their own email; returns rows deleted."""
        await self.confirm(principal, confirm_email)
        return await self._store.delete_tenant(principal.tenant_id)
