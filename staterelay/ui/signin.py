"""Getting in: first-run setup, sign-in, sign-out, sign-up and accepting an invite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from aiohttp import web

from staterelay.browser.csrf import verify_csrf
from staterelay.browser.forms import field_errors, read_form
from staterelay.browser.render import render
from staterelay.browser.sessions import (
    client_ip,
    current_user,
    end_session,
    link_base,
    safe_next,
    start_session,
)
from staterelay.browser.state import core_of
from staterelay.core.accounts import InviteUnusable
from staterelay.core.errors import Conflict, InvalidInput, NotAuthenticated
from staterelay.core.records import User
from staterelay.core.recovery import LinkUnusable
from staterelay.core.throttle import LoginThrottled
from staterelay.ui.forms import confirm_errors

routes = web.RouteTableDef()

AFTER_SIGN_UP: Final = "/dashboard"
LOGIN_FAILED: Final = "The email or password is wrong."


# setup ---------------------------------------------------------------------------------------
@routes.get("/setup", name="setup")
async def setup_form(request: web.Request) -> web.StreamResponse:
    """The form that creates the first admin, reached through the link ``serve`` logs."""
    token = request.query.get("token", "")
    if not await core_of(request).accounts.setup_token_valid(token):
        return await _setup_link_unusable(request)
    return _setup_page(request, token, {}, {})


@routes.post("/setup")
async def setup_submit(request: web.Request) -> web.StreamResponse:
    """Create the first admin, sign them in and go to their account."""
    form = await read_form(request)
    await verify_csrf(request, form)
    accounts = core_of(request).accounts
    token = form.get("token", "")
    if not await accounts.setup_token_valid(token):
        return await _setup_link_unusable(request)
    errors = confirm_errors(form)
    if not errors:
        try:
            user = await accounts.complete_setup(
                token, email=form.get("email", ""), password=form.get("password", "")
            )
        except InvalidInput as error:
            errors = field_errors(error)
        else:
            await _signed_in_redirect(request, user, AFTER_SIGN_UP)
    return _setup_page(request, token, form, errors, status=422)


async def _setup_link_unusable(request: web.Request) -> web.Response:
    """Why a setup link does not work (it is used once, and a restart makes a new one)."""
    if not await core_of(request).accounts.setup_required():
        return link_page(
            request,
            410,
            "This setup link has been used",
            "The admin account exists already: the setup link works only once.",
            ("Sign in", "/login"),
        )
    return link_page(
        request,
        404,
        "This setup link is out of date",
        "Each start of StateRelay makes a new setup link and the older ones stop working. "
        "Use the link in the log of the latest start (journalctl -u staterelay, or the "
        "terminal running staterelay serve).",
        None,
    )


def link_page(
    request: web.Request,
    status: int,
    title: str,
    message: str,
    action: tuple[str, str] | None,
) -> web.Response:
    """A page for a setup, invite or reset link that cannot be used: why, and what now."""
    return render(
        request,
        "link_unusable.html",
        {"title": title, "message": message, "action": action},
        status=status,
    )


def _setup_page(
    request: web.Request,
    token: str,
    form: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "setup.html",
        {"token": token, "email": form.get("email", ""), "errors": errors},
        status=status,
    )


# sign-in and sign-out ------------------------------------------------------------------------
@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.StreamResponse:
    """The sign-in form (or straight on to ``next`` when already signed in)."""
    next_path = safe_next(request.query.get("next"))
    if await current_user(request) is not None:
        raise web.HTTPSeeOther(location=next_path)
    notice = "registered" if request.query.get("registered") == "1" else None
    if request.query.get("reset") == "1":
        notice = "reset"
    return _login_page(request, email="", next_path=next_path, notice=notice)


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    """Check the credentials, start a new session and continue to ``next``."""
    form = await read_form(request)
    await verify_csrf(request, form)
    email = form.get("email", "")
    next_path = safe_next(form.get("next"))
    try:
        user = await core_of(request).accounts.login(
            email=email, password=form.get("password", ""), ip=client_ip(request)
        )
    except LoginThrottled as error:
        page = _login_page(
            request,
            email=email,
            next_path=next_path,
            error=f"Too many failed attempts. Try again in {error.retry_after} seconds.",
            status=429,
        )
        page.headers["Retry-After"] = str(error.retry_after)
        return page
    except NotAuthenticated:
        return _login_page(
            request, email=email, next_path=next_path, error=LOGIN_FAILED, status=422
        )
    await _signed_in_redirect(request, user, next_path)


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End this browser's session."""
    form = await read_form(request)
    await verify_csrf(request, form)
    response = web.HTTPSeeOther(location="/")
    await end_session(request, response)
    raise response


def _login_page(
    request: web.Request,
    *,
    email: str,
    next_path: str,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    context: dict[str, Any] = {
        "email": email,
        "next": next_path,
        "notice": notice,
        "error": error,
        "registration": core_of(request).accounts.registration,
        "can_email": core_of(request).recovery.can_email,
    }
    return render(request, "login.html", context, status=status)


# sign-up -------------------------------------------------------------------------------------
@routes.get("/register", name="register")
async def register_form(request: web.Request) -> web.StreamResponse:
    """The sign-up form; only where registration is open."""
    if core_of(request).accounts.registration != "open":
        raise web.HTTPNotFound()
    return render(request, "register.html", {"email": "", "errors": {}})


@routes.post("/register")
async def register_submit(request: web.Request) -> web.StreamResponse:
    """Create an account with a tenant of its own, then send everyone to sign in alike.

    A taken email gets exactly the same answer as a free one, so sign-up cannot be used to
    find out who has an account.
    """
    form = await read_form(request)
    await verify_csrf(request, form)
    accounts = core_of(request).accounts
    if accounts.registration != "open":
        raise web.HTTPNotFound()
    errors = confirm_errors(form)
    if not errors:
        try:
            await accounts.register(email=form.get("email", ""), password=form.get("password", ""))
        except InvalidInput as error:
            errors = field_errors(error)
        else:
            raise web.HTTPSeeOther(location="/login?registered=1")
    context = {"email": form.get("email", ""), "errors": errors}
    return render(request, "register.html", context, status=422)


# invites -------------------------------------------------------------------------------------
@routes.get("/invite/{token}", name="invite")
async def invite_form(request: web.Request) -> web.StreamResponse:
    """The form that accepts an invite (404 page when the link cannot be used)."""
    token = request.match_info["token"]
    try:
        await core_of(request).accounts.invite_for(token)
    except InviteUnusable as error:
        return _invite_unusable(request, error)
    return _invite_page(request, token, {}, {})


def _invite_unusable(request: web.Request, error: InviteUnusable) -> web.Response:
    status = 404 if error.reason == "unknown" else 410
    titles = {
        "used": "This invite has been used",
        "expired": "This invite has expired",
        "closed": "Invites are closed",
        "unknown": "This invite link is not known",
    }
    return link_page(
        request, status, titles[error.reason], error.detail[:1].upper() + error.detail[1:], None
    )


@routes.post("/invite/{token}")
async def invite_submit(request: web.Request) -> web.StreamResponse:
    """Create the account in the inviter's tenant and sign it in."""
    form = await read_form(request)
    await verify_csrf(request, form)
    token = request.match_info["token"]
    accounts = core_of(request).accounts
    try:
        await accounts.invite_for(token)
    except InviteUnusable as error:
        return _invite_unusable(request, error)
    errors = confirm_errors(form)
    if not errors:
        try:
            user = await accounts.accept_invite(
                token, email=form.get("email", ""), password=form.get("password", "")
            )
        except (InvalidInput, Conflict) as error:
            # Only someone an admin invited sees "taken"; sign-up never says so.
            errors = field_errors(error)
        else:
            await _signed_in_redirect(request, user, AFTER_SIGN_UP)
    return _invite_page(request, token, form, errors, status=422)


def _invite_page(
    request: web.Request,
    token: str,
    form: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "invite.html",
        {"token": token, "email": form.get("email", ""), "errors": errors},
        status=status,
    )


async def _signed_in_redirect(request: web.Request, user: User, location: str) -> NoReturn:
    """Sign ``user`` in with a new session and see ``location``."""
    response = web.HTTPSeeOther(location=location)
    await start_session(request, response, user)
    raise response


# forgotten passwords ---------------------------------------------------------------------------
FORGOT_SENT: Final = (
    "If an account uses that address, a reset link is on its way to it. It works once, for "
    "30 minutes. Nothing arriving? Check the spam folder, or ask the person who runs this "
    "StateRelay for a link."
)


@routes.get("/forgot", name="forgot")
async def forgot_form(request: web.Request) -> web.StreamResponse:
    """Ask for a reset link by e-mail (only where e-mail is configured)."""
    if not core_of(request).recovery.can_email:
        return _no_email_page(request)
    return render(request, "forgot.html", {"email": "", "errors": {}, "sent": False})


@routes.post("/forgot")
async def forgot_submit(request: web.Request) -> web.StreamResponse:
    """The same answer whether or not the address has an account."""
    form = await read_form(request)
    await verify_csrf(request, form)
    recovery = core_of(request).recovery
    if not recovery.can_email:
        return _no_email_page(request)
    email = form.get("email", "")
    try:
        await recovery.request_by_email(email, client_ip(request), link_base(request))
    except InvalidInput as error:
        context = {"email": email, "errors": field_errors(error), "sent": False}
        return render(request, "forgot.html", context, status=422)
    return render(request, "forgot.html", {"email": email, "errors": {}, "sent": True})


def _no_email_page(request: web.Request) -> web.Response:
    return link_page(
        request,
        404,
        "No e-mail on this server",
        "This StateRelay does not send e-mail. Ask the person who runs it for a reset link "
        "(Settings, People in this household), or, on the server itself, run: staterelay "
        "user set-password --email YOU@EXAMPLE.COM --password-stdin",
        ("Sign in", "/login"),
    )


@routes.get("/reset/{token}", name="reset")
async def reset_form(request: web.Request) -> web.StreamResponse:
    """Choose a new password with a one-time link."""
    token = request.match_info["token"]
    try:
        await core_of(request).recovery.reset_for(token)
    except LinkUnusable as error:
        return _reset_unusable(request, error)
    return render(request, "reset.html", {"token": token, "errors": {}})


@routes.post("/reset/{token}")
async def reset_submit(request: web.Request) -> web.StreamResponse:
    """Set the password; every session of the user ends, then they sign in again."""
    form = await read_form(request)
    await verify_csrf(request, form)
    token = request.match_info["token"]
    recovery = core_of(request).recovery
    errors = confirm_errors(form)
    if not errors:
        try:
            await recovery.complete(token, form.get("password", ""))
        except LinkUnusable as error:
            return _reset_unusable(request, error)
        except InvalidInput as error:
            errors = field_errors(error)
        else:
            response = web.HTTPSeeOther(location="/login?reset=1")
            await end_session(request, response)
            raise response
    return render(request, "reset.html", {"token": token, "errors": errors}, status=422)


def _reset_unusable(request: web.Request, error: LinkUnusable) -> web.Response:
    again = ("Ask for a new link", "/forgot") if core_of(request).recovery.can_email else None
    return link_page(
        request,
        404 if "not known" in error.reason else 410,
        "This reset link cannot be used",
        f"The link {error.reason}. A new one can be made: with “Forgot password?” on the "
        "sign-in page where this server sends e-mail, or by an admin of your household in "
        "Settings.",
        again,
    )
