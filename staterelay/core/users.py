"""UserService: tenants and the people in them."""

from __future__ import annotations

import asyncio
import re

from staterelay.core.clock import Clock
from staterelay.core.device_types import require_text
from staterelay.core.errors import InvalidInput, NotFound
from staterelay.core.ids import new_id
from staterelay.core.passwords import hash_password
from staterelay.core.records import Tenant, User
from staterelay.core.storage import Store

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}$")
DEFAULT_TENANT_NAME = "Home"
# Top-level domains reserved by RFC 2606 and RFC 6761: no mailbox there can receive mail,
# and StateRelay's own internal accounts (IFTTT's endpoint tests) live under one of them.
RESERVED_TLDS = frozenset({"invalid", "test", "example", "localhost"})


def validate_email(value: object, *, allow_reserved: bool = False) -> str:
    """A plausible email address (the link in an invite proves it works), never under a
    reserved top-level domain unless ``allow_reserved`` (for StateRelay's own accounts)."""
    email = require_text(value, "email").strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput("email is not a valid address", field="email")
    tld = email.rsplit(".", 1)[-1].rstrip(".").lower()
    if tld in RESERVED_TLDS and not allow_reserved:
        raise InvalidInput(
            f"email cannot be at a .{tld} domain: nothing can be delivered there",
            field="email",
        )
    return email


class UserService:
    """Create and find users; the self-hosted household is the first tenant."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._tenant_lock = asyncio.Lock()

    async def household(self) -> Tenant:
        """The default tenant of a self-hosted instance, created on first use."""
        async with self._tenant_lock:
            tenant = await self._store.first_tenant()
            if tenant is None:
                tenant = await self._store.create_tenant(
                    Tenant(id=new_id("ten"), name=DEFAULT_TENANT_NAME, created_at=self._clock())
                )
            return tenant

    async def create(
        self,
        *,
        email: object,
        password: str | None = None,
        is_admin: bool = False,
        tenant_id: str | None = None,
        internal: bool = False,
    ) -> User:
        """Create a user in ``tenant_id`` (the household when None); ``internal`` accounts
        (StateRelay's own, under a reserved domain) cannot be registered by anyone."""
        clean_email = validate_email(email, allow_reserved=internal)
        password_hash = (
            await asyncio.to_thread(hash_password, password) if password is not None else None
        )
        if tenant_id is None:
            tenant_id = (await self.household()).id
        elif await self._store.get_tenant(tenant_id) is None:
            raise NotFound("no such tenant")
        return await self._store.create_user(
            User(
                id=new_id("usr"),
                tenant_id=tenant_id,
                email=clean_email,
                is_admin=is_admin,
                created_at=self._clock(),
                password_hash=password_hash,
            )
        )

    async def by_email(self, email: str) -> User:
        """The user with this email; ``NotFound`` otherwise."""
        user = await self._store.find_user_by_email(email.strip())
        if user is None:
            raise NotFound("no user with this email")
        return user

    async def get(self, tenant_id: str, user_id: str) -> User:
        """One user of a tenant."""
        user = await self._store.get_user(tenant_id, user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def count(self) -> int:
        """How many users the instance has."""
        return await self._store.count_users()
