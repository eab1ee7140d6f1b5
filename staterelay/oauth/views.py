"""The token-side endpoints: token, revoke, userinfo and RFC 8414 metadata."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web
from authlib.oauth2.rfc6749 import (
    InsecureTransportError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from multidict import MultiMapping

from staterelay.app.appkeys import CORE_KEY
from staterelay.core import Core
from staterelay.core.errors import CredentialExpired, NotFound, StateRelayError
from staterelay.core.oauth_clients import AUTH_METHODS, KNOWN_SCOPES
from staterelay.oauth.requests import Snapshot, form_snapshot
from staterelay.oauth.server import OAuthResponse, Prefetched, StateRelayAuthorizationServer

_LOGGER = logging.getLogger(__name__)

ISSUER_KEY: Final = web.AppKey("staterelay.oauth.issuer", str)

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
USERINFO_PATH = "/oauth/userinfo"
METADATA_PATH = "/.well-known/oauth-authorization-server"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

routes = web.RouteTableDef()


# token and revocation endpoints -------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.Response]]


def oauth_error(
    request: web.Request, error: StateRelayError, headers: Mapping[str, str]
) -> web.Response:
    """An error the request boundary raised itself (a rate limit), as RFC 6749 error JSON.

    RFC 6749 has no code for "too many requests"; ``temporarily_unavailable`` says "retry
    later". This is the ``ErrorRenderer`` of the JSON endpoints in the surfaces table.
    """
    code = "temporarily_unavailable" if error.status in (429, 503) else error.code
    body = {"error": code, "error_description": error.detail}
    return web.json_response(body, status=error.status, headers={**headers, **NO_STORE})


def _json_errors(handler: Handler) -> Handler:
    """Answer a domain error (a full disk, a body that never came) as OAuth error JSON.

    Token and revocation clients read JSON, never the HTML page the browser paths get.
    """

    @functools.wraps(handler)
    async def answered(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except StateRelayError as error:
            body = {"error": error.code, "error_description": error.detail}
            return web.json_response(body, status=error.status, headers=NO_STORE)

    return answered


@routes.post(TOKEN_PATH)
@_json_errors
async def token(request: web.Request) -> web.Response:
    """Exchange a code, or refresh; commit what validation decided in one transaction."""
    core = request.app[CORE_KEY]
    snapshot = await _form_request(request)
    if isinstance(snapshot, web.Response):
        _count_token_error(core, snapshot)
        return snapshot
    form = snapshot.form
    prefetched = await _prefetch_clients(core, snapshot)
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code" and form.get("code"):
        prefetched.code = await core.oauth.find_code(form["code"])
    elif grant_type == "refresh_token" and form.get("refresh_token"):
        prefetched.token = await core.oauth.find_token(form["refresh_token"])
    server = StateRelayAuthorizationServer(core.oauth, prefetched)
    response: OAuthResponse = server.create_token_response(snapshot)
    answer = _json(await _commit_token(core, server, snapshot, response))
    _count_token_error(core, answer)
    return answer


def _count_token_error(core: Core, answer: web.Response) -> None:
    """Count a token endpoint refusal by its OAuth error code."""
    if answer.status < 400:
        return
    body = answer.text or ""
    error = "other"
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            error = parsed["error"]
    core.counters.oauth_token_error(error)


async def _commit_token(
    core: Core,
    server: StateRelayAuthorizationServer,
    snapshot: Snapshot,
    response: OAuthResponse,
) -> OAuthResponse:
    intents = server.intents
    if intents.reused_code is not None:
        await core.oauth.code_reused(intents.reused_code)
    if intents.stale_refresh is not None:
        await core.oauth.refresh_reused(intents.stale_refresh)
    if response.status != 200:
        return response
    if intents.replayed is not None:
        return response
    issued = intents.issued
    if intents.consume_code is not None and issued is not None:
        if await core.oauth.exchange_code(intents.consume_code, issued):
            return response
        return _error(server, snapshot, InvalidGrantError("The code is no longer valid."))
    if intents.reissue is not None and issued is not None:
        pair = await core.oauth.reissue(intents.reissue, issued)
        if pair is None:
            return _error(server, snapshot, InvalidGrantError("The refresh token was replaced."))
        if pair is issued:
            return response
        return OAuthResponse(200, core.oauth.response_for(pair), response.headers)
    if intents.rotate is not None and issued is not None:
        pair = await core.oauth.rotate(intents.rotate, issued)
        if pair is None:
            return _error(server, snapshot, InvalidGrantError("The refresh token was revoked."))
        if pair is issued:
            return response
        # A concurrent refresh of the same token won: both callers get its pair.
        return OAuthResponse(200, core.oauth.response_for(pair), response.headers)
    _LOGGER.error("token request validated without an outcome to commit")
    raise web.HTTPInternalServerError


@routes.post(REVOKE_PATH)
@_json_errors
async def revoke(request: web.Request) -> web.Response:
    """RFC 7009 revocation: 200 for unknown tokens too."""
    core = request.app[CORE_KEY]
    snapshot = await _form_request(request)
    if isinstance(snapshot, web.Response):
        return snapshot
    prefetched = await _prefetch_clients(core, snapshot)
    if snapshot.form.get("token"):
        prefetched.token = await core.oauth.find_token(snapshot.form["token"])
    server = StateRelayAuthorizationServer(core.oauth, prefetched)
    response: OAuthResponse = server.create_endpoint_response("revocation", snapshot)
    if response.status == 200 and server.intents.revoke is not None:
        await core.oauth.revoke_token(server.intents.revoke)
    return _json(response)


async def _form_request(request: web.Request) -> Snapshot | web.Response:
    """The form-encoded body as a snapshot, or the error answer for a malformed request."""
    form: MultiMapping[Any] = await request.post()
    try:
        snapshot = form_snapshot(request, form, request.app[ISSUER_KEY])
    except InsecureTransportError as error:
        _LOGGER.error("OAuth needs an https public_url (or http://localhost) to run")
        return _json(OAuthResponse(*error()))
    repeated = snapshot.payload.repeated()
    if repeated is not None:
        # RFC 6749 section 3.2: parameters MUST NOT be included more than once.
        return _json(OAuthResponse(*InvalidRequestError(f"Repeated '{repeated}' parameter.")()))
    basic_id, _ = extract_basic_authorization(snapshot.headers)
    if basic_id is not None and "client_secret" in snapshot.form:
        # RFC 6749 section 2.3: one authentication method per request.
        return _json(OAuthResponse(*InvalidRequestError("Use one client authentication method.")()))
    return snapshot


async def _prefetch_clients(core: Core, snapshot: Snapshot) -> Prefetched:
    prefetched = Prefetched()
    basic_id, _ = extract_basic_authorization(snapshot.headers)
    for client_id in (basic_id, snapshot.form.get("client_id")):
        if client_id and client_id not in prefetched.clients:
            record = await core.oauth.get_client(client_id)
            if record is not None:
                prefetched.clients[client_id] = record
    return prefetched


def _error(
    server: StateRelayAuthorizationServer, snapshot: Snapshot, error: OAuth2Error
) -> OAuthResponse:
    response: OAuthResponse = server.handle_error_response(snapshot, error)
    return response


def _json(response: OAuthResponse) -> web.Response:
    headers = {name: value for name, value in response.headers if name.lower() != "content-type"}
    return web.json_response(response.body, status=response.status, headers={**headers, **NO_STORE})


# userinfo and metadata ----------------------------------------------------------------------
@routes.get(USERINFO_PATH)
async def userinfo(request: web.Request) -> web.Response:
    """Who an access token belongs to: user id, email and tenant (RFC 6750 bearer)."""
    core = request.app[CORE_KEY]
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return _bearer_error(None, "A bearer access token is required.")
    try:
        principal = await core.oauth.resolve(credential.strip())
    except CredentialExpired:
        return _bearer_error("invalid_token", "The access token has expired.")
    if principal is None:
        return _bearer_error("invalid_token", "The access token is unknown or revoked.")
    try:
        user = await core.users.get(principal.tenant_id, principal.user_id)
    except NotFound:
        return _bearer_error("invalid_token", "The user of this token no longer exists.")
    return web.json_response(
        {
            "sub": user.id,
            "user_id": user.id,
            "email": user.email,
            "tenant_id": user.tenant_id,
            "client_id": principal.client_id,
        },
        headers=NO_STORE,
    )


def _bearer_error(error: str | None, description: str) -> web.Response:
    challenge = 'Bearer realm="staterelay"'
    body: dict[str, str] = {"error": error or "invalid_request", "error_description": description}
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge, **NO_STORE})


@routes.get(METADATA_PATH)
async def metadata(request: web.Request) -> web.Response:
    """RFC 8414 authorization server metadata."""
    issuer = request.app[ISSUER_KEY]
    return web.json_response(
        {
            "issuer": issuer,
            "authorization_endpoint": issuer + AUTHORIZE_PATH,
            "token_endpoint": issuer + TOKEN_PATH,
            "revocation_endpoint": issuer + REVOKE_PATH,
            "userinfo_endpoint": issuer + USERINFO_PATH,
            "scopes_supported": list(KNOWN_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "code_challenge_methods_supported": ["S256"],
        }
    )
