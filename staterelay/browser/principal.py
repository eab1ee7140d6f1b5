"""A signed-in browser as a core ``Principal``, and the guard of pages that need one."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.browser.sessions import current_user, login_redirect
from staterelay.core.records import Principal
from staterelay.core.sessions import SignedIn

SESSION_SCOPES: Final = frozenset({"read", "write"})


def session_principal(signed_in: SignedIn) -> Principal:
    """The principal core sees for a browser session: the user, read and write."""
    return Principal(
        tenant_id=signed_in.tenant_id,
        user_id=signed_in.user_id,
        scopes=SESSION_SCOPES,
        credential="session",
        credential_id=signed_in.session_id,
    )


async def require_user(request: web.Request) -> SignedIn:
    """The signed-in user; raises the 303 to the sign-in page when there is none."""
    signed_in = await current_user(request)
    if signed_in is None:
        raise login_redirect(request)
    return signed_in


async def require_principal(request: web.Request) -> tuple[SignedIn, Principal]:
    """The signed-in user and their principal; sign-in first when there is none."""
    signed_in = await require_user(request)
    return signed_in, session_principal(signed_in)
