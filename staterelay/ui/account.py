"""The account page: change the password, see and end sessions, invite people (admins)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from staterelay.core.sessions import SignedIn
from staterelay.core.throttle import LoginThrottled
from staterelay.errors import InvalidInput
from staterelay.ui.forms import confirm_errors, field_errors
from staterelay.web.csrf import verify_csrf
from staterelay.web.forms import read_form
from staterelay.web.render import render
from staterelay.web.sessions import client_ip, current_user, end_session, login_redirect
from staterelay.web.state import core_of

routes = web.RouteTableDef()

NOTICES: Final = {
    "password": "Your password was changed. Every other session was signed out.",
    "session": "The session was signed out.",
    "invite": "The invite was withdrawn.",
}


async def _require_user(request: web.Request) -> SignedIn:
    signed_in = await current_user(request)
    if signed_in is None:
        raise login_redirect(request)
    return signed_in


@routes.get("/account", name="account")
async def account(request: web.Request) -> web.StreamResponse:
    """The signed-in user's account page."""
    signed_in = await _require_user(request)
    notice = NOTICES.get(request.query.get("done", ""))
    return await _account_page(request, signed_in, notice=notice)


@routes.post("/account/password", name="change_password")
async def change_password(request: web.Request) -> web.StreamResponse:
    """Set a new password; every other session of the user ends."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await _require_user(request)
    errors = confirm_errors(form, "new_password")
    status = 422
    retry_after = 0
    if not errors:
        try:
            await core_of(request).accounts.change_password(
                signed_in,
                current=form.get("current_password", ""),
                new=form.get("new_password", ""),
                ip=client_ip(request),
            )
        except InvalidInput as error:
            errors = field_errors(error)
        except LoginThrottled as error:
            retry_after = error.retry_after
            errors = {
                "current_password": f"Too many wrong passwords. Try again in {retry_after} seconds."
            }
            status = 429
        else:
            raise web.HTTPSeeOther(location="/account?done=password")
    page = await _account_page(request, signed_in, errors=errors, status=status)
    if retry_after:
        page.headers["Retry-After"] = str(retry_after)
    return page


@routes.post("/account/sessions/{session_id}/revoke", name="revoke_session")
async def revoke_session(request: web.Request) -> web.StreamResponse:
    """Sign out one of the user's sessions (this one included)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await _require_user(request)
    session_id = request.match_info["session_id"]
    if session_id == signed_in.session_id:
        response = web.HTTPSeeOther(location="/login")
        await end_session(request, response)
        raise response
    if not await core_of(request).sessions.revoke(signed_in, session_id):
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther(location="/account?done=session")


@routes.post("/account/invites", name="create_invite")
async def create_invite(request: web.Request) -> web.StreamResponse:
    """Make an invite link and show it, this once."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await _require_user(request)
    core = core_of(request)
    invite, token = await core.accounts.create_invite(signed_in)
    link = f"{core.config.public_url}/invite/{token}"
    return await _account_page(
        request, signed_in, new_invite=link, new_invite_expires=invite.expires_at
    )


@routes.post("/account/invites/{invite_id}/revoke", name="revoke_invite")
async def revoke_invite(request: web.Request) -> web.StreamResponse:
    """Withdraw a pending invite."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await _require_user(request)
    await core_of(request).accounts.revoke_invite(signed_in, request.match_info["invite_id"])
    raise web.HTTPSeeOther(location="/account?done=invite")


async def _account_page(
    request: web.Request,
    signed_in: SignedIn,
    *,
    notice: str | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    **extra: Any,
) -> web.Response:
    core = core_of(request)
    context: dict[str, Any] = {
        "notice": notice,
        "errors": errors or {},
        "sessions": [
            {
                "id": session.id,
                "device": describe_agent(session.user_agent),
                "ip": session.ip,
                "created_at": session.created_at,
                "last_seen_at": session.last_seen_at,
                "current": session.id == signed_in.session_id,
            }
            for session in await core.sessions.list(signed_in)
        ],
        "can_invite": core.accounts.invites_allowed(signed_in.user),
        "invites": await core.accounts.list_invites(signed_in),
        "new_invite": None,
        **extra,
    }
    return render(request, "account.html", context, status=status)


_BROWSERS: Final = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)
_SYSTEMS: Final = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def describe_agent(user_agent: str) -> str:
    """A short name for a browser, like ``Firefox on Linux``, from its User-Agent."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (user_agent[:60] if user_agent else "Unknown browser")
