"""The authorization endpoint: sign-in, the consent page, and the redirect with a code."""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from authlib.oauth2.rfc6749 import InsecureTransportError, OAuth2Error

from staterelay.app.appkeys import CORE_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.render import render
from staterelay.browser.sessions import current_user, safe_next
from staterelay.core import Core
from staterelay.core.oauth_clients import SCOPE_DESCRIPTIONS
from staterelay.core.sessions import SignedIn
from staterelay.oauth.requests import Snapshot, query_snapshot
from staterelay.oauth.server import OAuthResponse, Prefetched, StateRelayAuthorizationServer
from staterelay.oauth.views import AUTHORIZE_PATH, ISSUER_KEY, NO_STORE

_LOGGER = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get(AUTHORIZE_PATH)
async def authorize(request: web.Request) -> web.StreamResponse:
    """Validate the client's request, make sure someone is signed in, and ask for consent."""
    core = request.app[CORE_KEY]
    snapshot = _authorize_snapshot(request)
    if isinstance(snapshot, web.StreamResponse):
        return snapshot
    signed_in = await current_user(request)
    server = StateRelayAuthorizationServer(core.oauth, await _prefetch_client(core, snapshot))
    try:
        grant = server.get_consent_grant(snapshot, end_user=signed_in.user if signed_in else None)
    except OAuth2Error as error:
        return await _authorize_error(request, server, snapshot, error, signed_in)
    if signed_in is None:
        raise _sign_in_first(request)
    client = grant.client.record
    scopes = snapshot.scope.split() if snapshot.scope else []
    return render(
        request,
        "oauth_consent.html",
        {
            "client_name": client.name,
            "client_id": client.id,
            "redirect_host": urlsplit(grant.redirect_uri).hostname or "",
            "scopes": [(s, SCOPE_DESCRIPTIONS.get(s, s)) for s in scopes],
            "email": signed_in.user.email,
            "action": request.raw_path,  # exactly as the client sent it
        },
        # A form-action directive would also apply to the redirect back to Alexa or IFTTT.
        form_action=False,
    )


@routes.post(AUTHORIZE_PATH)
async def authorize_decision(request: web.Request) -> web.StreamResponse:
    """The consent form: re-validate the original request, then redirect with a code (303)."""
    core = request.app[CORE_KEY]
    form = await request.post()
    signed_in = await current_user(request)
    if signed_in is None:
        raise _sign_in_first(request)
    await verify_csrf(request, {k: v for k, v in form.items() if isinstance(v, str)})
    snapshot = _authorize_snapshot(request)
    if isinstance(snapshot, web.StreamResponse):
        return snapshot
    server = StateRelayAuthorizationServer(core.oauth, await _prefetch_client(core, snapshot))
    try:
        # The query string is the client's original request: validated again from scratch,
        # never taken from hidden fields.
        grant = server.get_consent_grant(snapshot, end_user=signed_in.user)
    except OAuth2Error as error:
        return await _authorize_error(request, server, snapshot, error, signed_in)
    approved = form.get("decision") == "allow"
    response: OAuthResponse = server.create_authorization_response(
        snapshot, grant_user=signed_in.user if approved else None, grant=grant
    )
    new_code = server.intents.new_code
    if new_code is not None and response.status == 302:
        code, decided = new_code
        await core.oauth.save_code(code, decided)
    return _redirect(response, see_other=True)


def _sign_in_first(request: web.Request) -> web.HTTPSeeOther:
    """To sign-in, then back to this authorization request (a GET, also after the POST).

    ``next`` is the request line's raw path and query, so parameters whose values hold
    encoded ``&``, ``+`` or spaces (a client's ``state``) come back exactly as sent.
    """
    return web.HTTPSeeOther("/login?" + urlencode({"next": safe_next(request.raw_path)}))


def _authorize_snapshot(request: web.Request) -> Snapshot | web.Response:
    try:
        return query_snapshot(request, request.app[ISSUER_KEY])
    except InsecureTransportError:
        _LOGGER.error("OAuth needs an https public_url (or http://localhost) to run")
        return web.Response(
            status=500,
            text="OAuth needs server.public_url to be https (or http://localhost).",
        )


async def _prefetch_client(core: Core, snapshot: Snapshot) -> Prefetched:
    prefetched = Prefetched()
    client_id = snapshot.payload.client_id
    if client_id:
        record = await core.oauth.get_client(client_id)
        if record is not None:
            prefetched.clients[record.id] = record
    return prefetched


async def _authorize_error(
    request: web.Request,
    server: StateRelayAuthorizationServer,
    snapshot: Snapshot,
    error: OAuth2Error,
    signed_in: SignedIn | None,
) -> web.StreamResponse:
    """Redirect errors only to a validated redirect URI, and only for a signed-in user."""
    if error.redirect_uri:
        if signed_in is None:
            raise _sign_in_first(request)
        response = server.handle_error_response(snapshot, error)
        return _redirect(response, see_other=request.method == "POST")
    return render(
        request,
        "oauth_error.html",
        {"error": error.error, "description": error.description or ""},
        status=400,
    )


def _redirect(response: OAuthResponse, *, see_other: bool) -> web.Response:
    location = response.location
    if location is None:  # pragma: no cover - authlib redirects whenever a URI was validated
        raise web.HTTPInternalServerError
    # After a POST, 303 makes the browser follow with a GET (RFC 9700 section 4.12).
    status = 303 if see_other else 302
    return web.Response(status=status, headers={"Location": location, **NO_STORE})
