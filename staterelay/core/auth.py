"""Authentication: every bearer credential resolves to a ``Principal`` through one function.

API keys (``sr_`` prefix) are resolved here; other credentials (OAuth access tokens) plug in
as resolvers, so the API, Alexa and IFTTT all authenticate the same way.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence

from staterelay.core.clock import Clock
from staterelay.core.crypto import token_digest
from staterelay.core.devices import require
from staterelay.core.ids import new_id
from staterelay.core.models import SCOPES, Principal
from staterelay.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from staterelay.store.base import Store
from staterelay.store.records import ApiKey, User

API_KEY_PREFIX = "sr_"
KEY_NAME_MAX = 64
TOUCH_INTERVAL = 60.0  # seconds between last-used writes for one key

TokenResolver = Callable[[str], Awaitable[Principal | None]]


def scopes_for(scope: object) -> tuple[str, ...]:
    """The scopes a key of the named level holds (``write`` also reads)."""
    if scope not in SCOPES:
        raise InvalidInput("scope must be read or write", field="scope")
    return ("read", "write") if scope == "write" else ("read",)


class AuthService:
    """Resolve bearer credentials, and manage API keys."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._resolvers: list[TokenResolver] = []
        self._last_used: dict[str, float] = {}
        self._last_written: dict[str, float] = {}

    def add_resolver(self, resolver: TokenResolver) -> None:
        """Let another kind of token (OAuth) authenticate through ``authenticate``."""
        self._resolvers.append(resolver)

    async def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for; ``NotAuthenticated`` otherwise."""
        if not token:
            raise NotAuthenticated("a bearer token is required")
        if token.startswith(API_KEY_PREFIX):
            key = await self._store.find_api_key(token_digest(token))
            if key is None or key.revoked_at is not None:
                raise NotAuthenticated("the API key is unknown or revoked")
            self._note_use(key.id)
            return Principal(
                tenant_id=key.tenant_id,
                user_id=key.user_id,
                scopes=frozenset(key.scopes),
                credential="api_key",
                credential_id=key.id,
            )
        for resolver in self._resolvers:
            principal = await resolver(token)
            if principal is not None:
                return principal
        raise NotAuthenticated("the bearer token is unknown, revoked or expired")

    def _note_use(self, key_id: str) -> None:
        self._last_used[key_id] = self._clock()

    async def flush_last_used(self, *, force: bool = False) -> int:
        """Write last-used times, at most once a minute per key; returns keys written."""
        now = self._clock()
        due = {
            key_id: at
            for key_id, at in self._last_used.items()
            if force or now - self._last_written.get(key_id, 0.0) >= TOUCH_INTERVAL
        }
        if not due:
            return 0
        await self._store.touch_api_keys(due)
        for key_id in due:
            self._last_written[key_id] = now
            self._last_used.pop(key_id, None)
        return len(due)

    async def create_api_key(
        self, user: User, *, name: object, scope: object
    ) -> tuple[ApiKey, str]:
        """Create a key for ``user``; returns the record and the secret, shown only once."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= KEY_NAME_MAX:
            raise InvalidInput(f"name must be 1 to {KEY_NAME_MAX} characters", field="name")
        secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id("key"),
            tenant_id=user.tenant_id,
            user_id=user.id,
            name=name.strip(),
            prefix=secret[:7],
            scopes=scopes_for(scope),
            created_at=self._clock(),
            last_used_at=None,
            revoked_at=None,
        )
        stored = await self._store.create_api_key(key, token_digest(secret))
        return stored, secret

    async def create_key_for(
        self, principal: Principal, *, name: object, scope: object
    ) -> tuple[ApiKey, str]:
        """A principal creates a key for its own user, never wider than its own scopes."""
        require(principal, "write")
        wanted = scopes_for(scope)
        if not all(principal.can(s) for s in wanted):
            raise Forbidden("a key cannot have scopes its creator lacks")
        user = await self._store.get_user(principal.tenant_id, principal.user_id)
        if user is None:
            raise NotAuthenticated("the user of this credential no longer exists")
        return await self.create_api_key(user, name=name, scope=scope)

    async def list_keys(self, principal: Principal) -> Sequence[ApiKey]:
        """The principal's user's keys."""
        require(principal, "read")
        return await self._store.list_api_keys(principal.tenant_id, principal.user_id)

    async def revoke_key(self, principal: Principal, key_id: str) -> None:
        """Revoke one of the user's keys; ``NotFound`` for any other id."""
        require(principal, "write")
        if not await self._store.revoke_api_key(
            principal.tenant_id, principal.user_id, key_id, self._clock()
        ):
            raise NotFound("no such API key")
