"""The API sub-application: routes, authentication and the problem-details error boundary."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from staterelay.api import (
    activity,
    billing,
    devices,
    grants,
    integrations,
    keys,
    openapi,
    webhooks,
)
from staterelay.api.auth import authenticate, challenge_for
from staterelay.api.problems import error_for_http
from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.problems import InternalError, problem_response
from staterelay.core import Core
from staterelay.core.errors import NotAuthenticated, PlanRateLimited, StateRelayError
from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_ROUTES: Final = frozenset({"openapi"})
"""Route names served without a bearer token."""


def create_api_app(core: Core, settings: Settings) -> web.Application:
    """The API sub-application mounted at ``/api/v1/``."""
    app = web.Application(middlewares=[problem_middleware, auth_middleware])
    app[CORE_KEY] = core
    app[SETTINGS_KEY] = settings
    app[openapi.OPENAPI_KEY] = openapi.document_bytes()
    for table in (
        devices.routes,
        activity.routes,
        webhooks.routes,
        keys.routes,
        grants.routes,
        integrations.routes,
        billing.routes,
        openapi.routes,
    ):
        app.router.add_routes(table)
    return app


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as problem+json; log the unexpected ones and hide their details."""
    try:
        return await handler(request)
    except NotAuthenticated as error:
        return problem_response(error, headers={"WWW-Authenticate": challenge_for(error)})
    except PlanRateLimited as error:
        return problem_response(error, headers={"Retry-After": str(error.retry_after)})
    except StateRelayError as error:
        return problem_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        return problem_response(error_for_http(exc), headers={"Allow": allow} if allow else None)
    except ConnectionResetError:
        raise  # the client hung up mid-body; the request boundary notes it
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(InternalError("an unexpected error occurred and was logged"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every matched route except the public ones; unmatched paths fall to 404."""
    match_info = request.match_info
    if match_info.http_exception is None and match_info.route.name not in PUBLIC_ROUTES:
        await authenticate(request)
    return await handler(request)
