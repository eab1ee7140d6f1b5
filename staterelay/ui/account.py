"""Settings: profile, password, sessions, API keys, linked apps and household invites.

The page lives at ``/dashboard/settings``; the old ``/account`` address redirects there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import field_errors, read_form
from staterelay.browser.household import all_devices
from staterelay.browser.principal import require_user, session_principal
from staterelay.browser.render import render
from staterelay.browser.sessions import client_ip, end_session, link_base
from staterelay.browser.state import core_of
from staterelay.core.errors import Forbidden, InvalidInput
from staterelay.core.recovery import RESET_PATH
from staterelay.core.sessions import SignedIn
from staterelay.core.throttle import LoginThrottled
from staterelay.core.users import validate_email
from staterelay.ui.forms import confirm_errors

_LOGGER = logging.getLogger(__name__)

SETTINGS_PATH: Final = "/dashboard/settings"

routes = web.RouteTableDef()

NOTICES: Final = {
    "password": "Your password was changed. Every other session was signed out.",
    "session": "The session was signed out.",
    "invite": "The invite was withdrawn.",
    "key": "The API key was revoked. Scripts using it get 401 from now on.",
    "app": "The app was unlinked. It can no longer see or change your devices.",
}


@routes.get("/account", name="account")
async def old_account(request: web.Request) -> web.StreamResponse:
    """The settings page's old address."""
    await require_user(request)
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPMovedPermanently(location=SETTINGS_PATH + query)


@routes.get(SETTINGS_PATH, name="settings")
async def settings_page(request: web.Request) -> web.StreamResponse:
    """The signed-in user's settings."""
    signed_in = await require_user(request)
    notice = NOTICES.get(request.query.get("done", ""))
    return await _settings_page(request, signed_in, notice=notice)


@routes.post(f"{SETTINGS_PATH}/password", name="change_password")
async def change_password(request: web.Request) -> web.StreamResponse:
    """Set a new password; every other session of the user ends."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
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
            raise web.HTTPSeeOther(location=f"{SETTINGS_PATH}?done=password")
    page = await _settings_page(request, signed_in, errors=errors, status=status)
    if retry_after:
        page.headers["Retry-After"] = str(retry_after)
    return page


@routes.post(f"{SETTINGS_PATH}/sessions/{{session_id}}/revoke", name="revoke_session")
async def revoke_session(request: web.Request) -> web.StreamResponse:
    """Sign out one of the user's sessions (this one included)."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    session_id = request.match_info["session_id"]
    if session_id == signed_in.session_id:
        response = web.HTTPSeeOther(location="/login")
        await end_session(request, response)
        raise response
    if not await core_of(request).sessions.revoke(signed_in, session_id):
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther(location=f"{SETTINGS_PATH}?done=session")


@routes.post(f"{SETTINGS_PATH}/keys", name="create_key")
async def create_key(request: web.Request) -> web.StreamResponse:
    """Make an API key and show it, this once."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    scope = form.get("scope", "")
    devices = [name.removeprefix("device:") for name in form if name.startswith("device:")]
    try:
        key, secret = await core_of(request).auth.create_key_for(
            session_principal(signed_in),
            name=form.get("key_name", ""),
            scope=scope,
            device_ids=devices or None,
        )
    except (InvalidInput, Forbidden) as error:
        field = {"name": "key_name"}.get(error.field or "", error.field or "key_name")
        detail = field_errors(InvalidInput(error.detail, field=field))
        return await _settings_page(request, signed_in, errors=detail, key_form=form, status=422)
    return await _settings_page(request, signed_in, new_key={"name": key.name, "secret": secret})


@routes.post(f"{SETTINGS_PATH}/keys/{{key_id}}/revoke", name="revoke_key")
async def revoke_key(request: web.Request) -> web.StreamResponse:
    """Revoke one of the user's API keys."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    await core_of(request).auth.revoke_key(
        session_principal(signed_in), request.match_info["key_id"]
    )
    raise web.HTTPSeeOther(location=f"{SETTINGS_PATH}?done=key")


@routes.post(f"{SETTINGS_PATH}/apps/{{grant_id}}/revoke", name="revoke_app")
async def revoke_app(request: web.Request) -> web.StreamResponse:
    """Unlink an app (Alexa, IFTTT, ...): its grant and every token of it are revoked."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    await core_of(request).oauth.revoke_grant(
        session_principal(signed_in), request.match_info["grant_id"]
    )
    raise web.HTTPSeeOther(location=f"{SETTINGS_PATH}?done=app")


@routes.post(f"{SETTINGS_PATH}/invites", name="create_invite")
async def create_invite(request: web.Request) -> web.StreamResponse:
    """Make an invite link and show it, this once."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    core = core_of(request)
    address = form.get("invite_email", "").strip()
    if address and core.recovery.can_email:
        try:
            validate_email(address)
        except InvalidInput:
            errors = {"invite_email": "Enter an e-mail address, or leave it empty."}
            return await _settings_page(
                request, signed_in, errors=errors, invite_form=form, status=422
            )
    invite, token = await core.accounts.create_invite(signed_in)
    link = f"{link_base(request)}/invite/{token}"
    mailed = None
    if address and core.recovery.can_email:
        try:
            mailed = await core.recovery.mail_invite(signed_in, invite, address, link)
        except OSError as exc:
            _LOGGER.warning("an invite could not be mailed: %s", exc)
            errors = {"invite_email": "The mail server did not take the message; copy the link."}
            return await _settings_page(
                request,
                signed_in,
                errors=errors,
                invite_form=form,
                new_invite=link,
                new_invite_expires=invite.expires_at,
                status=502,
            )
    return await _settings_page(
        request,
        signed_in,
        new_invite=link,
        new_invite_expires=invite.expires_at,
        invite_mailed=mailed,
    )


@routes.post(f"{SETTINGS_PATH}/members/{{user_id}}/reset", name="member_reset")
async def member_reset(request: web.Request) -> web.StreamResponse:
    """An admin makes a one-time reset link for someone of the household, shown once."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    user, token = await core_of(request).recovery.link_for_member(
        signed_in, request.match_info["user_id"]
    )
    link = f"{link_base(request)}{RESET_PATH}{token}"
    return await _settings_page(request, signed_in, new_reset={"email": user.email, "link": link})


@routes.post(f"{SETTINGS_PATH}/invites/{{invite_id}}/revoke", name="revoke_invite")
async def revoke_invite(request: web.Request) -> web.StreamResponse:
    """Withdraw a pending invite."""
    form = await read_form(request)
    await verify_csrf(request, form)
    signed_in = await require_user(request)
    await core_of(request).accounts.revoke_invite(signed_in, request.match_info["invite_id"])
    raise web.HTTPSeeOther(location=f"{SETTINGS_PATH}?done=invite")


async def _settings_page(
    request: web.Request,
    signed_in: SignedIn,
    *,
    notice: str | None = None,
    errors: Mapping[str, str] | None = None,
    key_form: Mapping[str, str] | None = None,
    status: int = 200,
    **extra: Any,
) -> web.Response:
    core = core_of(request)
    principal = session_principal(signed_in)
    keys = [key for key in await core.auth.list_keys(principal) if key.revoked_at is None]
    devices = await all_devices(core, principal)
    names = {device.id: device.name for device in devices}
    context: dict[str, Any] = {
        "nav": "settings",
        "notice": notice,
        "errors": errors or {},
        "key_form": key_form or {"scope": "write"},
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
        "keys": [
            {
                "id": key.id,
                "name": key.name,
                "prefix": key.prefix,
                "scope": "read and write" if "write" in key.scopes else "read only",
                "created_at": key.created_at,
                "last_used_at": key.last_used_at,
                "devices": None
                if key.device_ids is None
                else [names.get(device_id, "a deleted device") for device_id in key.device_ids],
            }
            for key in sorted(keys, key=lambda k: k.created_at, reverse=True)
        ],
        "devices": [{"id": device.id, "name": device.name} for device in devices],
        "apps": await core.oauth.list_grants(principal),
        "can_invite": core.accounts.invites_allowed(signed_in.user),
        "invites": await core.accounts.list_invites(signed_in),
        "billing_enabled": request.config_dict[SETTINGS_KEY].billing.enabled,
        "members": await core.recovery.members(signed_in),
        "can_email": core.recovery.can_email,
        "invite_form": {},
        "invite_mailed": None,
        "new_invite": None,
        "new_reset": None,
        "new_key": None,
        **extra,
    }
    return render(request, "settings.html", context, status=status)


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
