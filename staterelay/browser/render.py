"""HTML responses: autoescaped jinja2 templates with StateRelay's security headers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import jinja2
from aiohttp import web
from markupsafe import Markup

from staterelay.browser.state import core_of, deliver_nonce, form_token, state_of
from staterelay.core.clock import iso

_LOGGER = logging.getLogger(__name__)

FormAction = str | None | Literal[False]

CSP_BASE: Final = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
)
_FALLBACK_PAGE: Final = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>{status}</title>"
    "<h1>{status}</h1><p>Something went wrong.</p></html>"
)


def content_security_policy(form_action: FormAction = "'self'") -> str:
    """The CSP header value; ``form_action`` False or None leaves ``form-action`` out.

    Browsers apply ``form-action`` to the redirect that follows a form POST too, so a page
    whose form redirects to another site (OAuth consent) must omit or widen it.
    """
    directives = list(CSP_BASE)
    if form_action:
        directives.append(f"form-action {form_action}")
    return "; ".join(directives)


def security_headers(form_action: FormAction = "'self'") -> dict[str, str]:
    """The headers every HTML page carries."""
    return {
        "Content-Security-Policy": content_security_policy(form_action),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment: ``staterelay/templates``, autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("staterelay", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["time"] = time_tag
    return env


def when(ts: float | None) -> str:
    """An epoch time as ``2026-11-25 21:46 UTC`` for people (templates: ``|when``)."""
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def time_tag(ts: float | None) -> Markup:
    """``<time datetime="…">2026-11-25 21:46 UTC</time>`` for templates (``|time``)."""
    if ts is None:
        return Markup("never")
    return Markup('<time datetime="{}">{}</time>').format(iso(ts), when(ts))


class _LazyToken:
    """Renders as the request's CSRF token, made (with its nonce cookie) only if a page uses it."""

    def __init__(self, request: web.Request) -> None:
        self._request = request

    def __str__(self) -> str:
        return form_token(self._request)

    def __html__(self) -> str:
        # URL-safe base64: nothing to escape.
        return str(self)


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    form_action: FormAction = "'self'",
) -> web.Response:
    """Render ``staterelay/templates/<template>`` as a no-store HTML page with security headers.

    The context gains ``csrf_token``, ``signed_in`` (a ``SignedIn`` or None; it has ``email``,
    ``user_id``, ``tenant_id`` and ``is_admin``) and ``public_url``. The session must have been
    resolved (``html_layer`` does it) for ``signed_in`` to be set.
    """
    values = {
        **context,
        "csrf_token": _LazyToken(request),
        "signed_in": state_of(request).signed_in,
        "public_url": core_of(request).config.public_url,
    }
    html = environment().get_template(template).render(values)
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers.update(security_headers(form_action))
    response.headers["Cache-Control"] = "no-store"
    deliver_nonce(request, response)
    return response


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """An HTML error page with the given status; never shows a traceback."""
    try:
        return render(
            request,
            "error.html",
            {"status": status, "title": title, "message": message},
            status=status,
        )
    except Exception:  # a broken template must not turn an error page into a crash
        _LOGGER.exception("cannot render the error page")
        response = web.Response(
            text=_FALLBACK_PAGE.format(status=status), status=status, content_type="text/html"
        )
        response.headers.update(security_headers())
        response.headers["Cache-Control"] = "no-store"
        return response


def error_exception(
    request: web.Request, kind: type[web.HTTPException], title: str, message: str
) -> web.HTTPException:
    """An ``HTTPException`` of ``kind`` whose body is the HTML error page, ready to raise."""
    page = error_page(request, kind.status_code, title, message)
    headers = {k: v for k, v in page.headers.items() if k.lower() != "content-type"}
    return kind(text=page.text, content_type="text/html", headers=headers)
