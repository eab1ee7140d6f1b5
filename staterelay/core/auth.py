"""Authentication: every bearer credential resolves to a ``Principal`` through one function.

API keys (``sr_`` prefix) are resolved here; other credentials (OAuth access tokens) plug in
as resolvers, so the API, Alexa and IFTTT all authenticate the same way.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence

from staterelay.core.clock import Clock
from staterelay.core.crypto import token_digest
from staterelay.core.device_types import has_control_characters, require_text
from staterelay.core.devices import require_account_access
from staterelay.core.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from staterelay.core.ids import new_id
from staterelay.core.recent import RecentCache
from staterelay.core.records import SCOPES, ApiKey, Principal, User
from staterelay.core.request_tenant import note_tenant
from staterelay.core.storage import Store

API_KEY_PREFIX = "sr_"
KEY_NAME_MAX = 64
KEY_DEVICES_MAX = 50  # devices one device-scoped key may name
KEY_CACHE_SECONDS = 2.0
TOUCH_INTERVAL = 60.0  # seconds between last-used writes for one key

TokenResolver = Callable[[str], Awaitable[Principal | None]]


def scopes_for(scope: object) -> tuple[str, ...]:
    """The scopes a key of the named level holds (``write`` also reads)."""
    if scope not in SCOPES:
        raise InvalidInput("scope must be read or write", field="scope")
    return ("read", "write") if scope == "write" else ("read",)


def recent_keys(ttl: float = KEY_CACHE_SECONDS) -> RecentCache[Principal]:
    """The memory of API keys verified moments ago (see ``RecentCache``); unknown and
    revoked keys are never remembered, and revoking through this process forgets at once."""
    return RecentCache(ttl)


class AuthService:
    """Resolve bearer credentials, and manage API keys."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._resolvers: list[TokenResolver] = []
        self._last_used: dict[str, float] = {}
        self._recent_keys = recent_keys()
        self._last_written: dict[str, float] = {}

    def add_resolver(self, resolver: TokenResolver) -> None:
        """Let another kind of token (OAuth) authenticate through ``authenticate``."""
        self._resolvers.append(resolver)

    async def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for; ``NotAuthenticated`` otherwise."""
        if not token:
            raise NotAuthenticated("a bearer token is required")
        if token.startswith(API_KEY_PREFIX):
            digest = token_digest(token)
            principal = self._recent_keys.get(digest)
            if principal is None:
                generation = self._recent_keys.generation
                key = await self._store.find_api_key(digest)
                if key is None or key.revoked_at is not None:
                    raise NotAuthenticated("the API key is unknown or revoked")
                principal = Principal(
                    tenant_id=key.tenant_id,
                    user_id=key.user_id,
                    scopes=frozenset(key.scopes),
                    credential="api_key",
                    credential_id=key.id,
                    device_ids=None if key.device_ids is None else frozenset(key.device_ids),
                )
                self._recent_keys.put(digest, principal, generation)
            self._note_use(principal.credential_id)
            note_tenant(principal.tenant_id)
            return principal
        for resolver in self._resolvers:
            principal = await resolver(token)
            if principal is not None:
                note_tenant(principal.tenant_id)
                return principal
        raise NotAuthenticated("the bearer token is unknown, revoked or expired")

    async def authenticate_linked_app(self, token: str | None) -> Principal:
        """Like ``authenticate``, for endpoints only linked apps call (Alexa, IFTTT).

        A personal API key is refused there: those endpoints speak for an app the user
        linked through OAuth, and unlinking it must end their access.
        """
        principal = await self.authenticate(token)
        if principal.credential != "oauth":
            raise NotAuthenticated("this endpoint takes the access token of a linked app")
        return principal

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
        self, user: User, *, name: object, scope: object, device_ids: object = None
    ) -> tuple[ApiKey, str]:
        """Create a key for ``user``; returns the record and the secret, shown only once.

        ``device_ids`` limits the key to those devices of the user's household; None lets
        it reach every device.
        """
        text = require_text(name, "name").strip()
        if not 1 <= len(text) <= KEY_NAME_MAX or has_control_characters(text):
            raise InvalidInput(
                f"name must be 1 to {KEY_NAME_MAX} characters without control characters",
                field="name",
            )
        scopes = scopes_for(scope)
        devices = await self._key_devices(user.tenant_id, device_ids)
        secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id("key"),
            tenant_id=user.tenant_id,
            user_id=user.id,
            name=text,
            prefix=secret[:7],
            scopes=scopes,
            created_at=self._clock(),
            last_used_at=None,
            revoked_at=None,
            device_ids=devices,
        )
        stored = await self._store.create_api_key(key, token_digest(secret))
        return stored, secret

    async def _key_devices(self, tenant_id: str, value: object) -> tuple[str, ...] | None:
        """The devices a new key is limited to, deduplicated; each must be the tenant's."""
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise InvalidInput("device_ids must be an array of device ids", field="device_ids")
        wanted = tuple(dict.fromkeys(value))
        if not 1 <= len(wanted) <= KEY_DEVICES_MAX:
            raise InvalidInput(
                f"device_ids must name 1 to {KEY_DEVICES_MAX} devices"
                " (leave it out for a key that reaches every device)",
                field="device_ids",
            )
        for device_id in wanted:
            if await self._store.get_device(tenant_id, device_id) is None:
                raise InvalidInput(
                    f"no device {device_id[:80]!r} in this household", field="device_ids"
                )
        return wanted

    async def create_key_for(
        self, principal: Principal, *, name: object, scope: object, device_ids: object = None
    ) -> tuple[ApiKey, str]:
        """A principal creates a key for its own user, never wider than its own scopes."""
        require_account_access(principal, "write")
        wanted = scopes_for(scope)
        if not all(principal.can(s) for s in wanted):
            raise Forbidden("a key cannot have scopes its creator lacks")
        user = await self._store.get_user(principal.tenant_id, principal.user_id)
        if user is None:
            raise NotAuthenticated("the user of this credential no longer exists")
        return await self.create_api_key(user, name=name, scope=scope, device_ids=device_ids)

    async def list_keys(self, principal: Principal) -> Sequence[ApiKey]:
        """The principal's user's keys."""
        require_account_access(principal, "read")
        return await self._store.list_api_keys(principal.tenant_id, principal.user_id)

    async def revoke_key(self, principal: Principal, key_id: str) -> None:
        """Revoke one of the user's keys; ``NotFound`` for any other id."""
        require_account_access(principal, "write")
        if not await self._store.revoke_api_key(
            principal.tenant_id, principal.user_id, key_id, self._clock()
        ):
            raise NotFound("no such API key")
        self._recent_keys.forget_where(lambda known: known.credential_id == key_id)
