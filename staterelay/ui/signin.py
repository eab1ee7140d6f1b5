"""Getting in: first-run setup, sign-in, sign-out, sign-up and accepting an invite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn

from aiohttp import web

from staterelay.core.models import User
from staterelay.core.throttle import LoginThrottled
from staterelay.errors import Conflict, InvalidInput, NotAuthenticated
from staterelay.ui.forms import confirm_errors, field_errors
from staterelay.web.csrf import verify_csrf
from staterelay.web.forms import read_form
from staterelay.web.render import render
from staterelay.web.sessions import (
    client_ip,
    current_user,
    end_session,
    safe_next,
    start_session,
)
from staterelay.web.state import core_of

routes = web.RouteTableDef()

AFTER_SIGN_UP: Final = "/dashboard"
LOGIN_FAILED: Final = "The email or password is wrong."


# setup ---------------------------------------------------------------------------------------
@routes.get("/setup", name="setup")
async def setup_form(request: web.Request) -> web.StreamResponse:
    """The form that creates the first admin, reached through the link ``serve`` logs."""
    token = request.query.get("token", "")
    if not await core_of(request).accounts.setup_token_valid(token):
        raise web.HTTPNotFound()
    return _setup_page(request, token, {}, {})


@routes.post("/setup")
async def setup_submit(request: web.Request) -> web.StreamResponse:
    """Create the first admin, sign them in and go to their account."""
    form = await read_form(request)
    await verify_csrf(request, form)
    accounts = core_of(request).accounts
    token = form.get("token", "")
    if not await accounts.setup_token_valid(token):
        raise web.HTTPNotFound()
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
    await core_of(request).accounts.invite_for(token)
    return _invite_page(request, token, {}, {})


@routes.post("/invite/{token}")
async def invite_submit(request: web.Request) -> web.StreamResponse:
    """Create the account in the inviter's tenant and sign it in."""
    form = await read_form(request)
    await verify_csrf(request, form)
    token = request.match_info["token"]
    accounts = core_of(request).accounts
    await accounts.invite_for(token)
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
