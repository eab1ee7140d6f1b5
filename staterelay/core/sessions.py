"""SessionService: server-side browser sessions behind a random cookie secret.

The cookie holds a random secret; the database keeps only its SHA-256 digest. A session ends
``idle`` seconds after its last use or ``absolute`` seconds after sign-in, whichever is first.
CSRF tokens are HMACs (with a key derived from the instance secret) of the session secret,
or of a pre-session nonce for forms shown before sign-in, so they are never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from staterelay.core.clock import Clock
from staterelay.core.crypto import derive_key, token_digest
from staterelay.core.ids import new_id
from staterelay.core.records import User
from staterelay.core.records.accounts import Session
from staterelay.core.request_tenant import note_tenant
from staterelay.core.storage import Store
from staterelay.settings import AccountsSettings

TOUCH_INTERVAL = 60.0  # seconds between last-seen writes for one session
SECRET_MIN = 32
SECRET_MAX = 128
USER_AGENT_MAX = 200


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The signed-in user of a request, the public id of the session and its CSRF token."""

    user: User
    session_id: str
    csrf_token: str = field(repr=False)
    expires_at: float = 0.0

    @property
    def user_id(self) -> str:
        """The user's id."""
        return self.user.id

    @property
    def tenant_id(self) -> str:
        """The user's tenant."""
        return self.user.tenant_id

    @property
    def email(self) -> str:
        """The user's email."""
        return self.user.email

    @property
    def is_admin(self) -> bool:
        """True for an administrator of the tenant."""
        return self.user.is_admin


def plausible_secret(value: str) -> bool:
    """True when ``value`` could be a cookie secret or nonce this module made."""
    return SECRET_MIN <= len(value) <= SECRET_MAX and value.isascii() and value.isprintable()


class SessionService:
    """Create, resolve, list and end browser sessions."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: AccountsSettings,
        *,
        instance_secret: bytes,
    ) -> None:
        self._store = store
        self._clock = clock
        self.idle_seconds = settings.session_idle_hours * 3600.0
        self.absolute_seconds = settings.session_absolute_days * 86400.0
        self._csrf_key = derive_key(instance_secret, "csrf")

    async def create(self, user: User, *, ip: str, user_agent: str) -> tuple[str, SignedIn]:
        """A new session for ``user``; returns the cookie secret (shown once) and the sign-in."""
        now = self._clock()
        await self._store.prune_sessions(idle_before=now - self.idle_seconds, now=now)
        secret = secrets.token_urlsafe(32)
        session = Session(
            id=new_id("ses"),
            tenant_id=user.tenant_id,
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.absolute_seconds,
            ip=ip,
            user_agent=user_agent[:USER_AGENT_MAX],
        )
        await self._store.create_session(session, token_digest(secret))
        return secret, self._signed_in(user, session, secret)

    async def resolve(self, secret: str) -> SignedIn | None:
        """The sign-in a cookie secret stands for; None when unknown, idle or expired."""
        if not plausible_secret(secret):
            return None
        found = await self._store.find_session(token_digest(secret))
        if found is None:
            return None
        session, user = found
        now = self._clock()
        if not self._alive(session, now):
            await self._store.delete_session(session.tenant_id, session.id)
            return None
        if now - session.last_seen_at >= TOUCH_INTERVAL:
            await self._store.touch_session(session.tenant_id, session.id, now)
        note_tenant(session.tenant_id)
        return self._signed_in(user, session, secret)

    async def list(self, signed_in: SignedIn) -> Sequence[Session]:
        """The user's live sessions, most recently used first."""
        now = self._clock()
        sessions = await self._store.list_sessions(signed_in.tenant_id, signed_in.user_id)
        return [s for s in sessions if self._alive(s, now)]

    async def revoke(self, signed_in: SignedIn, session_id: str) -> bool:
        """End one of the user's own sessions; False when it has no such session."""
        return await self._store.delete_session(
            signed_in.tenant_id, session_id, user_id=signed_in.user_id
        )

    async def end(self, signed_in: SignedIn) -> None:
        """Sign out: delete this session."""
        await self._store.delete_session(signed_in.tenant_id, signed_in.session_id)

    def anonymous_csrf_token(self, nonce: str) -> str:
        """The CSRF token of forms shown before sign-in, bound to the pre-session nonce."""
        return self._mac(b"anonymous:" + nonce.encode("ascii"))

    def _signed_in(self, user: User, session: Session, secret: str) -> SignedIn:
        csrf = self._mac(b"session:" + secret.encode("ascii"))
        return SignedIn(user, session.id, csrf, session.expires_at)

    def _alive(self, session: Session, now: float) -> bool:
        return session.expires_at > now and now - session.last_seen_at < self.idle_seconds

    def _mac(self, message: bytes) -> str:
        digest = hmac.new(self._csrf_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
