"""The OAuth authorization server's rules: clients, codes, grants, tokens and the resolver.

Nothing here speaks HTTP or authlib: the ``staterelay.oauth`` adapter validates requests and
calls these methods to read rows before validation and to commit outcomes after it. Codes and
tokens are opaque random strings; only their SHA-256 digests are stored.
"""

from __future__ import annotations

import heapq
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from staterelay.core.clock import Clock
from staterelay.core.crypto import SecretBox, token_digest
from staterelay.core.devices import require_account_access
from staterelay.core.errors import CredentialExpired, InvalidInput, NotFound
from staterelay.core.ids import new_id
from staterelay.core.oauth_clients import (
    permissions_for,
    validate_auth_method,
    validate_client_id,
    validate_name,
    validate_redirect_uris,
    validate_scopes,
)
from staterelay.core.recent import RecentCache
from staterelay.core.records import Principal
from staterelay.core.records.oauth import (
    LinkedApp,
    NewOAuthToken,
    OAuthClient,
    OAuthCode,
    OAuthGrant,
    OAuthToken,
)
from staterelay.core.storage import Store
from staterelay.settings import OAuthClientSettings, OAuthSettings

_LOGGER = logging.getLogger(__name__)

ACCESS_PREFIX = "sra_"
REFRESH_PREFIX = "srr_"
CODE_PREFIX = "src_"
SECRET_PREFIX = "srs_"
MAX_CODE_TTL = 600.0  # RFC 6749 4.1.2: a maximum lifetime of 10 minutes is RECOMMENDED
TOUCH_INTERVAL = 60.0  # seconds between last-used writes for one grant
EXPIRED_KEEP_SECONDS = 7 * 86400.0  # expired codes and access tokens are kept this long
ACCESS_CACHE_SECONDS = 2.0  # as long as API keys are remembered (auth.KEY_CACHE_SECONDS)

RefreshState = Literal["current", "replay", "superseded", "stale", "revoked"]


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A token pair as the client receives it (the only time the secrets exist in clear)."""

    access_token: str
    refresh_token: str | None
    expires_at: float
    scopes: tuple[str, ...]

    def response(self, now: float) -> dict[str, Any]:
        """The RFC 6749 section 5.1 token response body."""
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": self.access_token,
            "expires_in": max(0, round(self.expires_at - now)),
            "scope": " ".join(self.scopes),
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body

    def rows(self) -> list[NewOAuthToken]:
        """What the store keeps of this pair: digests only."""
        rows = [
            NewOAuthToken(token_digest(self.access_token), "access", self.scopes, self.expires_at)
        ]
        if self.refresh_token is not None:
            rows.append(
                NewOAuthToken(token_digest(self.refresh_token), "refresh", self.scopes, None)
            )
        return rows


def recent_tokens(
    ttl: float = ACCESS_CACHE_SECONDS,
) -> RecentCache[tuple[Principal, float | None]]:
    """The memory of access tokens resolved moments ago, with their expiry (checked on every
    use). Alexa sends the user's token with every directive; any revocation through this
    process forgets every entry at once (see ``RecentCache``)."""
    return RecentCache(ttl)


@dataclass(frozen=True, slots=True)
class NewCode:
    """What the consent step decided: the code's client, user, redirect and PKCE challenge."""

    client_id: str
    tenant_id: str
    user_id: str
    redirect_uri: str
    redirect_uri_given: bool
    scopes: tuple[str, ...]
    code_challenge: str | None = None
    code_challenge_method: str | None = None


@dataclass(frozen=True, slots=True)
class RevokedApp:
    """A linked app that was revoked: whose it was and which client held it."""

    tenant_id: str
    user_id: str
    grant_id: str
    client: OAuthClient | None  # None once the client itself was deleted


RevokeListener = Callable[[RevokedApp], Awaitable[None]]


class OAuthService:
    """Clients, codes, grants and tokens of StateRelay's authorization server."""

    def __init__(self, store: Store, clock: Clock, box: SecretBox, settings: OAuthSettings) -> None:
        self._store = store
        self._clock = clock
        self._box = box
        self.settings = settings
        self.access_ttl = float(settings.access_token_ttl_seconds)
        self.code_ttl = min(float(settings.code_ttl_seconds), MAX_CODE_TTL)
        self.refresh_grace = float(settings.refresh_grace_seconds)
        self._last_used: dict[str, float] = {}
        self._last_written: dict[str, float] = {}
        self._successors_due: list[float] = []  # a heap of times kept pairs fall due
        self._recent = recent_tokens()
        self._revoke_listeners: list[RevokeListener] = []

    def on_revoke(self, listener: RevokeListener) -> None:
        """Call ``listener`` after a grant is revoked (by its user, its client, or for reuse),
        so whatever the linked app set up (an Alexa link, IFTTT identities) ends with it."""
        self._revoke_listeners.append(listener)

    async def _announce_revoked(
        self, tenant_id: str, user_id: str, grant_id: str, client_id: str
    ) -> None:
        app = RevokedApp(tenant_id, user_id, grant_id, await self.get_client(client_id))
        for listener in self._revoke_listeners:
            try:
                await listener(app)
            except Exception:
                # The grant is revoked; the listener's own later checks catch up (an Alexa
                # link is ended before its next event at the latest).
                _LOGGER.exception("ending what linked app %s set up failed", grant_id)

    # clients -------------------------------------------------------------------------------
    async def load_config_clients(self) -> int:
        """Insert or update the clients the config file declares; returns how many."""
        for index, configured in enumerate(self.settings.clients):
            try:
                await self._store.upsert_oauth_client(self._config_client(configured))
            except InvalidInput as exc:
                field = f".{exc.field}" if exc.field else ""
                raise ValueError(f"oauth.clients[{index}]{field}: {exc.detail}") from None
        return len(self.settings.clients)

    def _config_client(self, configured: OAuthClientSettings) -> OAuthClient:
        if len(configured.secret) < 16:
            raise InvalidInput("the secret must be at least 16 characters", field="secret")
        return OAuthClient(
            id=validate_client_id(configured.id),
            name=validate_name(configured.name or configured.id),
            redirect_uris=validate_redirect_uris(configured.redirect_uris),
            token_endpoint_auth_method=configured.token_endpoint_auth_method,
            scopes=validate_scopes(configured.scopes),
            source="config",
            created_at=self._clock(),
            secret_digest=token_digest(configured.secret),
        )

    async def create_client(
        self,
        *,
        name: str,
        redirect_uris: Sequence[str],
        token_endpoint_auth_method: str,
        scopes: Sequence[str],
        client_id: str | None = None,
    ) -> tuple[OAuthClient, str]:
        """Register a client; returns it and its secret, which is shown only this once."""
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        client = OAuthClient(
            id=validate_client_id(client_id or new_id("cli")),
            name=validate_name(name),
            redirect_uris=validate_redirect_uris(redirect_uris),
            token_endpoint_auth_method="client_secret_post"
            if validate_auth_method(token_endpoint_auth_method) == "client_secret_post"
            else "client_secret_basic",
            scopes=validate_scopes(scopes),
            source="cli",
            created_at=self._clock(),
            secret_digest=token_digest(secret),
        )
        return await self._store.create_oauth_client(client), secret

    async def get_client(self, client_id: str) -> OAuthClient | None:
        """One client, or None."""
        return await self._store.get_oauth_client(client_id)

    async def list_clients(self) -> Sequence[OAuthClient]:
        """Every registered client."""
        return await self._store.list_oauth_clients()

    async def delete_client(self, client_id: str) -> None:
        """Delete a client and unlink every user of it; ``NotFound`` when there is none."""
        deleted = await self._store.delete_oauth_client(client_id)
        self._recent.clear()
        if not deleted:
            raise NotFound("no such OAuth client")

    @staticmethod
    def check_secret(client: OAuthClient, secret: str) -> bool:
        """True when ``secret`` is the client's (compared by digest, in constant time)."""
        return hmac.compare_digest(token_digest(secret), client.secret_digest)

    # codes ---------------------------------------------------------------------------------
    @staticmethod
    def new_code() -> str:
        """A fresh authorization code (about 256 random bits)."""
        return CODE_PREFIX + secrets.token_urlsafe(32)

    async def save_code(self, code: str, new: NewCode) -> OAuthCode:
        """Store a code the user just approved (by digest), valid for the code TTL."""
        now = self._clock()
        record = OAuthCode(
            digest=token_digest(code),
            tenant_id=new.tenant_id,
            user_id=new.user_id,
            client_id=new.client_id,
            redirect_uri=new.redirect_uri,
            redirect_uri_given=new.redirect_uri_given,
            scopes=new.scopes,
            code_challenge=new.code_challenge,
            code_challenge_method=new.code_challenge_method,
            created_at=now,
            expires_at=now + self.code_ttl,
        )
        await self._store.save_oauth_code(record)
        return record

    async def find_code(self, code: str) -> OAuthCode | None:
        """The stored code, used or not; None when unknown."""
        if not code.startswith(CODE_PREFIX):
            return None
        return await self._store.get_oauth_code(token_digest(code))

    def code_expired(self, code: OAuthCode) -> bool:
        """True once the code's lifetime has passed."""
        return self._clock() >= code.expires_at

    async def exchange_code(self, code: OAuthCode, tokens: IssuedTokens) -> bool:
        """Consume the code and record a new grant with ``tokens``, in one transaction.

        False when the code was used (then the grant of its first use is revoked), expired or
        lost a race with a concurrent exchange: the caller answers ``invalid_grant``.
        """
        now = self._clock()
        grant = OAuthGrant(
            id=new_id("grt"),
            tenant_id=code.tenant_id,
            user_id=code.user_id,
            client_id=code.client_id,
            scopes=code.scopes,
            created_at=now,
        )
        outcome = await self._store.exchange_oauth_code(
            code.digest, code.client_id, grant, tokens.rows(), now
        )
        if outcome == "reused":
            self._recent.clear()
            _LOGGER.warning(
                "authorization code of client %s used twice; its grant is revoked",
                code.client_id,
            )
        return outcome == "issued"

    async def code_reused(self, code: OAuthCode) -> None:
        """A used code came back: revoke every token its first exchange issued."""
        revoked = await self._store.revoke_reused_oauth_code(code.digest, self._clock())
        self._recent.clear()
        if revoked:
            _LOGGER.warning(
                "authorization code of client %s used twice; its grant is revoked",
                code.client_id,
            )

    # tokens --------------------------------------------------------------------------------
    def issue_tokens(self, scopes: Sequence[str], *, refresh: bool = True) -> IssuedTokens:
        """A new opaque access token (and refresh token) for ``scopes``; not stored yet."""
        return IssuedTokens(
            access_token=ACCESS_PREFIX + secrets.token_urlsafe(32),
            refresh_token=REFRESH_PREFIX + secrets.token_urlsafe(32) if refresh else None,
            expires_at=self._clock() + self.access_ttl,
            scopes=tuple(scopes),
        )

    def response_for(self, tokens: IssuedTokens) -> dict[str, Any]:
        """The token response body for ``tokens`` now."""
        return tokens.response(self._clock())

    async def find_token(self, token: str) -> OAuthToken | None:
        """The stored access or refresh token with its grant; None when unknown."""
        if not token.startswith((ACCESS_PREFIX, REFRESH_PREFIX)):
            return None
        return await self._store.get_oauth_token(token_digest(token))

    def refresh_state(
        self, token: OAuthToken, *, keep_until_successor_used: bool = False
    ) -> RefreshState:
        """How a presented refresh token stands.

        ``current``: not yet rotated. ``replay``: rotated within the grace window, so the
        pair its rotation issued is handed out again. ``stale``: rotated before the window
        (a replayed, possibly stolen token: the caller revokes the grant). ``superseded``:
        the same, for a client whose old token stays valid until its successor is used
        (``TokenRules``): the caller reissues, unless the successor was used. ``revoked``.
        """
        if token.kind != "refresh" or token.revoked:
            return "revoked"
        if token.rotated_at is None:
            return "current"
        if self._clock() - token.rotated_at <= self.refresh_grace and token.successor:
            return "replay"
        return "superseded" if keep_until_successor_used else "stale"

    def successor_of(self, token: OAuthToken) -> IssuedTokens | None:
        """The pair a rotation issued for ``token``, while it is still kept."""
        if token.successor is None:
            return None
        return self._open_successor(token.successor)

    async def rotate(self, token: OAuthToken, tokens: IssuedTokens) -> IssuedTokens | None:
        """Rotate a current refresh token to ``tokens`` in one transaction.

        When a concurrent refresh of the same token won, its pair is returned instead, so
        both callers get the same tokens. None when the token or grant was revoked meanwhile.
        """
        rotation = await self._store.rotate_oauth_refresh(
            token.digest, self._seal_successor(tokens), tokens.rows(), self._clock()
        )
        if rotation.outcome == "rotated":
            heapq.heappush(self._successors_due, self._clock() + self.refresh_grace)
            return tokens
        if rotation.outcome == "lost" and rotation.successor is not None:
            return self._open_successor(rotation.successor)
        return None

    async def reissue(self, token: OAuthToken, tokens: IssuedTokens) -> IssuedTokens | None:
        """Rotate a superseded refresh token again while its successor is unused (the client
        lost the answer that carried it); the unused successor is revoked.

        A concurrent reissue that won hands out its pair; a used successor means the old
        token is over: the grant is revoked as for any reuse, and None is returned.
        """
        assert token.rotated_at is not None
        rotation = await self._store.reissue_oauth_refresh(
            token.digest,
            token.rotated_at,
            self._seal_successor(tokens),
            tokens.rows(),
            self._clock(),
        )
        if rotation.outcome == "rotated":
            heapq.heappush(self._successors_due, self._clock() + self.refresh_grace)
            return tokens
        if rotation.outcome == "lost" and rotation.successor is not None:
            return self._open_successor(rotation.successor)
        if rotation.outcome == "superseded":
            await self.refresh_reused(token)
        return None

    async def refresh_reused(self, token: OAuthToken) -> None:
        """A refresh token rotated out before the grace window came back: revoke its grant."""
        revoked = await self._store.revoke_oauth_grant(
            token.tenant_id, token.grant_id, self._clock(), reason="refresh token reused"
        )
        self._recent.clear()
        if revoked:
            _LOGGER.warning(
                "refresh token of grant %s reused after rotation; the grant is revoked",
                token.grant_id,
            )
            await self._announce_revoked(
                token.tenant_id, token.user_id, token.grant_id, token.client_id
            )

    async def revoke_token(self, token: OAuthToken) -> None:
        """RFC 7009: an access token alone; a refresh token with its whole grant."""
        now = self._clock()
        if token.kind == "access":
            await self._store.revoke_oauth_access_token(token.digest, now)
            self._recent.clear()
            return
        revoked = await self._store.revoke_oauth_grant(
            token.tenant_id, token.grant_id, now, reason="revoked by client"
        )
        self._recent.clear()
        if revoked:
            await self._announce_revoked(
                token.tenant_id, token.user_id, token.grant_id, token.client_id
            )

    def _seal_successor(self, tokens: IssuedTokens) -> str:
        return self._box.encrypt(
            json.dumps(
                {
                    "access_token": tokens.access_token,
                    "refresh_token": tokens.refresh_token,
                    "expires_at": tokens.expires_at,
                    "scopes": list(tokens.scopes),
                }
            )
        )

    def _open_successor(self, sealed: str) -> IssuedTokens | None:
        try:
            data = json.loads(self._box.decrypt(sealed))
        except ValueError:
            _LOGGER.warning("a stored successor token pair does not decrypt; ignoring it")
            return None
        return IssuedTokens(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            expires_at=float(data["expires_at"]),
            scopes=tuple(data["scopes"]),
        )

    # the resolver --------------------------------------------------------------------------
    async def resolve(self, token: str) -> Principal | None:
        """The principal an access token stands for (``AuthService`` resolver).

        None when the token is not an OAuth access token, unknown or revoked;
        ``CredentialExpired`` once it has expired. A token resolved moments ago is answered
        from ``recent_tokens`` (see there for how revocation applies).
        """
        if not token.startswith(ACCESS_PREFIX):
            return None
        digest = token_digest(token)
        recent = self._recent.get(digest)
        if recent is None:
            generation = self._recent.generation
            row = await self._store.get_oauth_token(digest)
            if row is None or row.kind != "access" or row.revoked:
                return None
            principal = Principal(
                tenant_id=row.tenant_id,
                user_id=row.user_id,
                scopes=permissions_for(row.scopes),
                credential="oauth",
                credential_id=row.grant_id,
                client_id=row.client_id,
            )
            expires_at = row.expires_at
            self._recent.put(digest, (principal, expires_at), generation)
        else:
            principal, expires_at = recent
        now = self._clock()
        if expires_at is not None and now >= expires_at:
            raise CredentialExpired("the access token has expired")
        self._last_used[principal.credential_id] = now
        return principal

    async def flush_last_used(self, *, force: bool = False) -> int:
        """Write grants' last-used times, at most once a minute per grant; returns how many."""
        now = self._clock()
        due = {
            grant_id: at
            for grant_id, at in self._last_used.items()
            if force or now - self._last_written.get(grant_id, 0.0) >= TOUCH_INTERVAL
        }
        if not due:
            return 0
        await self._store.touch_oauth_grants(due)
        for grant_id in due:
            self._last_written[grant_id] = now
            self._last_used.pop(grant_id, None)
        return len(due)

    async def purge(self) -> int:
        """Forget successor pairs past the grace window and long-expired codes and tokens."""
        now = self._clock()
        return await self._store.purge_oauth(
            successors_before=now - self.refresh_grace,
            expired_before=now - EXPIRED_KEEP_SECONDS,
        )

    async def drop_expired_successors(self) -> int:
        """Forget the pairs kept for refresh retries once their window has passed.

        Cheap to call often: it writes only when a rotation of this process is due.
        """
        now = self._clock()
        if not self._successors_due or now < self._successors_due[0]:
            return 0
        while self._successors_due and self._successors_due[0] <= now:
            heapq.heappop(self._successors_due)
        return await self._store.purge_oauth(
            successors_before=now - self.refresh_grace, expired_before=float("-inf")
        )

    # linked apps ---------------------------------------------------------------------------
    async def list_grants(self, principal: Principal) -> Sequence[LinkedApp]:
        """The apps (Alexa, IFTTT, ...) the principal's user has linked, newest first."""
        require_account_access(principal, "read")
        return await self.list_user_grants(principal.tenant_id, principal.user_id)

    async def revoke_grant(self, principal: Principal, grant_id: str) -> None:
        """Unlink one app: revoke the grant and all its tokens; ``NotFound`` for other ids."""
        require_account_access(principal, "write")
        await self.revoke_user_grant(principal.tenant_id, principal.user_id, grant_id)

    async def list_user_grants(self, tenant_id: str, user_id: str) -> Sequence[LinkedApp]:
        """A user's active grants; last-used times not yet written are included."""
        apps = await self._store.list_oauth_grants(tenant_id, user_id)
        return [self._with_pending_use(app) for app in apps]

    async def revoke_user_grant(self, tenant_id: str, user_id: str, grant_id: str) -> None:
        """Revoke one of a user's grants; ``NotFound`` when the user has no such active grant."""
        apps = await self._store.list_oauth_grants(tenant_id, user_id)
        client_id = next((app.client_id for app in apps if app.grant_id == grant_id), None)
        revoked = await self._store.revoke_oauth_grant(
            tenant_id, grant_id, self._clock(), reason="revoked by user", user_id=user_id
        )
        self._recent.clear()
        if not revoked:
            raise NotFound("no such linked app")
        self._last_used.pop(grant_id, None)
        if client_id is not None:
            await self._announce_revoked(tenant_id, user_id, grant_id, client_id)

    def _with_pending_use(self, app: LinkedApp) -> LinkedApp:
        pending = self._last_used.get(app.grant_id)
        if pending is None or (app.last_used_at is not None and app.last_used_at >= pending):
            return app
        return LinkedApp(
            grant_id=app.grant_id,
            client_id=app.client_id,
            client_name=app.client_name,
            scopes=app.scopes,
            created_at=app.created_at,
            last_used_at=pending,
        )


__all__ = [
    "IssuedTokens",
    "LinkedApp",
    "NewCode",
    "OAuthClient",
    "OAuthCode",
    "OAuthService",
    "OAuthToken",
    "RevokedApp",
    "recent_tokens",
]
