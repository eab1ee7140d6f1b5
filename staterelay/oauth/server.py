"""authlib's authorization server on prefetched rows: validation only, outcomes as intents.

The handler loads the client and the code or token a request names (async), then runs
authlib here, synchronously and without I/O. The hooks authlib calls only *record* what should
happen (a code to save, a code to consume, a refresh token to rotate, a family to revoke); the
handler commits those intents through core in one transaction and may still turn a success
into ``invalid_grant`` when the commit loses a race.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge

from staterelay.core.crypto import token_digest
from staterelay.core.oauth import (
    IssuedTokens,
    NewCode,
    OAuthClient,
    OAuthCode,
    OAuthService,
    OAuthToken,
)
from staterelay.core.oauth_clients import AUTH_METHODS, KNOWN_SCOPES, token_rules
from staterelay.oauth.requests import Snapshot

# authlib logs issued tokens verbatim at DEBUG ("Issue token %r to %r"); a server run with
# log.level debug must not write them anywhere.
logging.getLogger("authlib").setLevel(logging.INFO)

GRANT_TYPES = ("authorization_code", "refresh_token")


@dataclass
class Prefetched:
    """Rows read before validation: clients by id, and the code or token the request names."""

    clients: dict[str, OAuthClient] = field(default_factory=dict)
    code: OAuthCode | None = None
    token: OAuthToken | None = None


@dataclass
class Intents:
    """What validation decided should happen; the handler commits it."""

    new_code: tuple[str, NewCode] | None = None
    issued: IssuedTokens | None = None
    consume_code: OAuthCode | None = None
    reused_code: OAuthCode | None = None
    rotate: OAuthToken | None = None
    reissue: OAuthToken | None = None
    replayed: IssuedTokens | None = None
    stale_refresh: OAuthToken | None = None
    revoke: OAuthToken | None = None


@dataclass(frozen=True)
class OAuthResponse:
    """authlib's answer, not yet an HTTP response: the handler may still replace it."""

    status: int
    body: Any
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        """The redirect target, when this is a redirect."""
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None


@dataclass(frozen=True)
class EndUser:
    """The resource owner authlib passes around: who the code or token belongs to."""

    tenant_id: str
    id: str


class Client(ClientMixin):  # type: ignore[misc]
    """A registered client as authlib asks about it."""

    def __init__(self, record: OAuthClient) -> None:
        self.record = record

    def get_client_id(self) -> str:
        """The client id."""
        return self.record.id

    def get_default_redirect_uri(self) -> str | None:
        """The redirect URI to use when none is sent: only when exactly one is registered."""
        uris = self.record.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to grant: the client's own when none is asked, None if beyond them."""
        if not scope:
            return " ".join(self.record.scopes)
        wanted = scope_to_list(scope)
        if not set(wanted) <= set(self.record.scopes):
            return None
        return " ".join(s for s in self.record.scopes if s in wanted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match against the registered URIs; no prefixes or patterns."""
        return redirect_uri in self.record.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Compare digests in constant time."""
        return OAuthService.check_secret(self.record, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Each client authenticates only the way it is configured to, everywhere (Google
        Home either way: its console switches between body and Basic)."""
        if token_rules(self.record).any_auth_method:
            return method in AUTH_METHODS
        return method == self.record.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        """Only the authorization code flow."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """Authorization code and refresh token grants."""
        return grant_type in GRANT_TYPES


class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    """A stored authorization code as authlib asks about it."""

    def __init__(self, record: OAuthCode) -> None:
        self.record = record
        self.code_challenge = record.code_challenge
        self.code_challenge_method = record.code_challenge_method

    def get_redirect_uri(self) -> str | None:
        """The redirect URI the token request must repeat, when the client sent one."""
        return self.record.redirect_uri if self.record.redirect_uri_given else None

    def get_scope(self) -> str:
        """The approved scope."""
        return " ".join(self.record.scopes)


class Token(TokenMixin):  # type: ignore[misc]
    """A stored access or refresh token as authlib asks about it."""

    def __init__(self, record: OAuthToken, *, replay: bool = False, reissue: bool = False) -> None:
        self.record = record
        self.replay = replay
        self.reissue = reissue

    def check_client(self, client: Client) -> bool:
        """Tokens are bound to the client they were issued to."""
        return self.record.client_id == client.get_client_id()

    def get_scope(self) -> str:
        """The token's scope."""
        return " ".join(self.record.scopes)

    def get_expires_in(self) -> int:
        """Not used by the grants registered here."""
        return 0

    def is_expired(self) -> bool:
        """Refresh tokens do not expire; access tokens are never refreshed with."""
        return False

    def is_revoked(self) -> bool:
        """True when the token or its grant is revoked."""
        return self.record.revoked


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only: ``plain`` is refused, a missing method means S256."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    """The authorization code grant on prefetched rows."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    server: StateRelayAuthorizationServer

    def generate_authorization_code(self) -> str:
        """Codes come from core (prefixed, 256 random bits)."""
        return OAuthService.new_code()

    def save_authorization_code(self, code: str, request: Snapshot) -> None:
        """Record the approved code; the handler stores it."""
        user: Any = request.user
        given = request.payload.redirect_uri
        redirect_uri = given or self.client.get_default_redirect_uri()
        challenge = request.payload.data.get("code_challenge") or None
        method = request.payload.data.get("code_challenge_method") or None
        if challenge and not method:
            method = S256CodeChallenge.DEFAULT_CODE_CHALLENGE_METHOD
        self.server.intents.new_code = (
            code,
            NewCode(
                client_id=self.client.get_client_id(),
                tenant_id=user.tenant_id,
                user_id=user.id,
                redirect_uri=redirect_uri,
                redirect_uri_given=bool(given),
                scopes=tuple(scope_to_list(request.scope) or ()),
                code_challenge=challenge,
                code_challenge_method=method if challenge else None,
            ),
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        """The prefetched code if it is this client's, unused and unexpired.

        A used one is remembered, so the handler revokes what its first use issued.
        """
        record = self.server.prefetched.code
        if record is None or record.digest != token_digest(code):
            return None
        if record.client_id != client.get_client_id():
            return None
        if record.used_at is not None:
            self.server.intents.reused_code = record
            return None
        if self.server.oauth.code_expired(record):
            return None
        return Code(record)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Record that the code is consumed; the handler does it atomically with the tokens."""
        self.server.intents.consume_code = authorization_code.record

    def authenticate_user(self, authorization_code: Code) -> EndUser:
        """The user who approved the code."""
        record = authorization_code.record
        return EndUser(record.tenant_id, record.user_id)


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    """Refresh with rotation and a grace window in which the previous token still works."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: StateRelayAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        """The prefetched token when it may refresh; a stale one is remembered for revocation."""
        record = self.server.prefetched.token
        if record is None or record.kind != "refresh":
            return None
        if record.digest != token_digest(refresh_token):
            return None
        if record.client_id != self.request.client.get_client_id():
            return None  # another client's token: invalid_grant, and no side effects
        client: Client = self.request.client
        rules = token_rules(client.record)
        state = self.server.oauth.refresh_state(
            record, keep_until_successor_used=rules.keep_until_successor_used
        )
        if state == "current":
            return Token(record)
        if state == "replay":
            return Token(record, replay=True)
        if state == "superseded":
            return Token(record, reissue=True)
        if state == "stale":
            self.server.intents.stale_refresh = record
        return None

    def authenticate_user(self, refresh_token: Token) -> EndUser:
        """The user of the token's grant."""
        record = refresh_token.record
        return EndUser(record.tenant_id, record.user_id)

    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        """Within the grace window, answer with the pair the first refresh issued."""
        token: Token = self.request.refresh_token
        if not token.replay:
            result: tuple[int, Any, list[tuple[str, str]]] = super().create_token_response()
            return result
        pair = self.server.oauth.successor_of(token.record)
        if pair is None:
            raise InvalidGrantError("The refresh token is no longer valid.")
        self.server.intents.replayed = pair
        return 200, self.server.oauth.response_for(pair), self.TOKEN_RESPONSE_HEADER

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Record the rotation (or reissue); the handler commits it with the new tokens."""
        if refresh_token.reissue:
            self.server.intents.reissue = refresh_token.record
        else:
            self.server.intents.rotate = refresh_token.record


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009 with each client's own auth method."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)
    server: StateRelayAuthorizationServer

    def check_params(self, request: Snapshot, client: Client) -> None:
        """``token`` is required; an unknown hint is ignored (RFC 7009 section 2.1)."""
        if not request.form.get("token"):
            raise InvalidRequestError("Missing 'token' in request.")

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        """The prefetched token of either kind, whatever the hint says."""
        record = self.server.prefetched.token
        if record is None or record.digest != token_digest(token_string):
            return None
        return Token(record)

    def revoke_token(self, token: Token, request: Snapshot) -> None:
        """Record the revocation; the handler commits it."""
        self.server.intents.revoke = token.record


class StateRelayAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """One request's authorization server: prefetched rows in, intents out."""

    def __init__(self, oauth: OAuthService, prefetched: Prefetched) -> None:
        super().__init__(scopes_supported=list(KNOWN_SCOPES))
        self.oauth = oauth
        self.prefetched = prefetched
        self.intents = Intents()
        self.register_token_generator("default", self._generate_token)
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)

    def query_client(self, client_id: str) -> Client | None:
        """A prefetched client."""
        record = self.prefetched.clients.get(client_id)
        return Client(record) if record is not None else None

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: EndUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        tokens = self.oauth.issue_tokens(scope_to_list(scope) or (), refresh=include_refresh_token)
        self.intents.issued = tokens
        return self.oauth.response_for(tokens)

    def save_token(self, token: dict[str, Any], request: Snapshot) -> None:
        """Nothing to do yet: the generator recorded the pair; the handler stores digests."""

    def create_oauth2_request(self, request: Snapshot) -> Snapshot:
        """Requests arrive as snapshots already."""
        return request

    def create_json_request(self, request: Any) -> Any:
        """No JSON endpoints are registered."""
        raise NotImplementedError

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> OAuthResponse:
        """Keep authlib's answer as data; the handler decides what is sent."""
        return OAuthResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signals are not used."""
