"""Bearer authentication: the ``Authorization`` header becomes a ``Principal`` on the request."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.app.appkeys import CORE_KEY
from staterelay.core.errors import NotAuthenticated
from staterelay.core.records import Principal

PRINCIPAL_KEY: Final = web.RequestKey("staterelay.api.principal", Principal)

REALM: Final = "staterelay"
# RFC 6750 section 3: no error code when no credential was sent, invalid_token otherwise.
CHALLENGE_MISSING: Final = f'Bearer realm="{REALM}"'
CHALLENGE_INVALID: Final = f'Bearer realm="{REALM}", error="invalid_token"'


class BearerMissing(NotAuthenticated):
    """No usable ``Authorization: Bearer`` header was sent."""


def bearer_token(request: web.Request) -> str:
    """The token of the request's ``Authorization: Bearer`` header; ``BearerMissing`` otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise BearerMissing("send an API key or access token as 'Authorization: Bearer <token>'")
    return token


async def authenticate(request: web.Request) -> Principal:
    """Resolve the request's bearer token through core and remember the principal."""
    core = request.app[CORE_KEY]
    principal = await core.auth.authenticate(bearer_token(request))
    await core.billing.check_api_request(principal)  # the plan's requests a minute (hosted)
    request[PRINCIPAL_KEY] = principal
    return principal


def principal_of(request: web.Request) -> Principal:
    """The principal the auth middleware stored for this request."""
    return request[PRINCIPAL_KEY]


def challenge_for(error: NotAuthenticated) -> str:
    """The ``WWW-Authenticate`` value for a 401."""
    return CHALLENGE_MISSING if isinstance(error, BearerMissing) else CHALLENGE_INVALID
