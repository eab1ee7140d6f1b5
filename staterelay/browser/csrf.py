"""CSRF protection for every HTML form POST: a synchronizer token per session.

Signed in, the token is an HMAC of the session secret (core/sessions.py). Before sign-in
(login, setup, sign-up and invite forms) there is no session yet, so the token is an HMAC of
a random nonce kept in a separate short-lived ``HttpOnly`` cookie (``sr_csrf``, or
``__Host-sr_csrf`` on https): a signed double-submit whose form value cannot be computed
without the instance secret, and which a cross-site page can neither read nor forge.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping

from aiohttp import web

from staterelay.browser.render import error_exception
from staterelay.browser.sessions import current_user
from staterelay.browser.state import cookie_nonce, core_of, form_token

_LOGGER = logging.getLogger(__name__)

FIELD = "csrf_token"


async def csrf_token(request: web.Request) -> str:
    """The token a form on this page must carry (makes the pre-session cookie if needed)."""
    await current_user(request)
    return form_token(request)


async def verify_csrf(request: web.Request, form: Mapping[str, str]) -> None:
    """Raise ``HTTPForbidden`` (an HTML page) unless ``form['csrf_token']`` is valid here."""
    sent = form.get(FIELD, "")
    sent_bytes = sent.encode("utf-8") if isinstance(sent, str) else b""
    expected: list[str] = []
    signed_in = await current_user(request)
    if signed_in is not None:
        expected.append(signed_in.csrf_token)
    nonce = cookie_nonce(request)
    if nonce is not None:
        expected.append(core_of(request).sessions.anonymous_csrf_token(nonce))
    # Compare against every candidate so the time taken does not say which one matched.
    matches = [hmac.compare_digest(sent_bytes, token.encode("ascii")) for token in expected]
    if sent_bytes and any(matches):
        return
    _LOGGER.warning(
        "refused %s %s: the CSRF token is %s",
        request.method,
        request.path,
        "wrong" if sent_bytes else "missing",
    )
    message = (
        "The form was not sent from this page, or it was open too long. Go back, reload the "
        "page and try again."
    )
    if "application/json" in request.headers.get("Accept", ""):
        raise web.HTTPForbidden(
            text=json.dumps({"error": message, "field": "form"}), content_type="application/json"
        )
    raise error_exception(request, web.HTTPForbidden, "This form has expired", message)
