"""The surfaces table: the one source of prefixes, host roles, layers, rate limits and error
renderers; integrations add theirs; a mistake in the table stops the app from being built."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from staterelay.app.integration import RateLimit, Surface
from staterelay.app.registry import BUILTIN
from staterelay.app.surfaces import APP, CORE_SURFACES, SurfaceTable
from staterelay.core.errors import NotFound
from staterelay.integrations.ifttt.wire import boundary_error

TABLE = SurfaceTable.of(BUILTIN)


@pytest.mark.parametrize(
    ("path", "roles", "html", "session", "limit"),
    [
        ("/", ("app",), True, True, RateLimit.ADDRESS),
        ("/dashboard/devices", ("app",), True, True, RateLimit.ADDRESS),
        ("/login", ("app", "auth"), True, True, RateLimit.ADDRESS),
        ("/static/app.css", ("app", "auth"), True, False, RateLimit.NONE),
        ("/api/v1/devices", ("api",), False, False, RateLimit.CREDENTIAL),
        ("/oauth/authorize", ("auth",), True, True, RateLimit.ADDRESS),
        ("/oauth/token", ("auth",), True, True, RateLimit.ADDRESS),
        ("/alexa/smart_home", ("alexa",), False, False, RateLimit.NONE),
        ("/ifttt/v1/status", ("ifttt",), False, False, RateLimit.IFTTT_TOKEN),
        ("/ifttt/other", ("ifttt",), False, False, RateLimit.NONE),
        ("/healthz", (), False, False, RateLimit.NONE),
        ("/metrics", (), False, False, RateLimit.NONE),
        # A prefix without its slash is its role's, and the dashboard's in every other way.
        ("/api", ("api",), True, True, RateLimit.ADDRESS),
        ("/ifttt/v1", ("ifttt",), False, False, RateLimit.NONE),
        ("/apiary", ("app",), True, True, RateLimit.ADDRESS),
    ],
)
def test_every_path_has_one_surface(
    path: str, roles: tuple[str, ...], html: bool, session: bool, limit: RateLimit
) -> None:
    """Which hosts serve it, which layers run and which limit counts it."""
    surface = TABLE.lookup(path)
    assert (surface.roles, surface.html, surface.session, surface.limit) == (
        roles,
        html,
        session,
        limit,
    )


def test_error_renderers_follow_the_protocols() -> None:
    """OAuth's JSON endpoints answer OAuth errors, IFTTT's API its own shape, the API and
    the operations endpoints problem+json, browser paths the error page."""
    renderers = {
        path: TABLE.lookup(path).errors.__name__
        for path in (
            "/oauth/token",
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server/more",
            "/oauth/authorize",
            "/ifttt/v1/triggers/x",
            "/api/v1/devices",
            "/readyz",
            "/dashboard",
        )
    }
    assert renderers == {
        "/oauth/token": "oauth_error",
        "/.well-known/oauth-authorization-server": "oauth_error",
        "/.well-known/oauth-authorization-server/more": "html_error",
        "/oauth/authorize": "html_error",
        "/ifttt/v1/triggers/x": "boundary_error",
        "/api/v1/devices": "problem",
        "/readyz": "problem",
        "/dashboard": "html_error",
    }
    request = make_mocked_request("GET", "/ifttt/v1/triggers/x")
    answer = boundary_error(request, NotFound("no such trigger"), {"Retry-After": "3"})
    assert answer.status == 404
    assert answer.headers["Retry-After"] == "3"
    assert answer.text == '{"errors":[{"message":"no such trigger."}]}'


def test_an_integrations_surface_joins_the_table() -> None:
    """The longest prefix wins, a whole path over any prefix, the default otherwise."""
    mine = Surface(path="/api/v1/mine/", roles=("app",), html=True, limit=RateLimit.NONE)
    exact = Surface(path="/api/v1/mine/status", roles=(), exact=True)
    table = SurfaceTable([*CORE_SURFACES, mine, exact])
    assert table.lookup("/api/v1/mine/x") is mine
    assert table.lookup("/api/v1/mine/status") is exact
    assert table.lookup("/api/v1/devices").roles == ("api",)
    assert table.lookup("/elsewhere") is APP
    assert table.role_of("/api/v1/mine/status") is None


@pytest.mark.parametrize(
    ("surfaces", "message"),
    [
        ([Surface(path="/x/", roles=("garage",))], "host roles must be among app, api"),
        ([Surface(path="x/", roles=("app",))], "must start with /"),
        ([Surface(path="/api/", roles=("api",))], "declared twice"),
    ],
)
def test_a_mistake_in_the_table_is_refused(surfaces: list[Surface], message: str) -> None:
    """Unknown host roles (``server.hosts`` names each), relative paths and repeats."""
    with pytest.raises(ValueError, match=message):
        SurfaceTable([*CORE_SURFACES, *surfaces])
