"""The surfaces table: the one source of truth about StateRelay's URL space.

Every path belongs to one ``Surface``, which says which host roles serve it, whether the
HTML layer (and the session within it) runs, which rate limit counts it and which renderer
answers the errors the request boundary raises itself. Core's surfaces are listed here;
each integration adds its own (``Integration.surfaces``). The host router, the rate-limit
gate and the request boundary all read the table, never a prefix of their own.

Looking a path up is on the hot path of every request, so the table is precomputed: one
dictionary lookup for whole paths, then the few prefixes that share the path's first
character, the more specific first. No string is built per request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Final

from staterelay.app.integration import Integration, RateLimit, Surface
from staterelay.app.problems import problem
from staterelay.browser.middleware import html_error
from staterelay.oauth.views import (
    METADATA_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
    oauth_error,
)
from staterelay.settings import HOST_ROLES

APP: Final = Surface(
    path="/",
    roles=("app",),
    html=True,
    session=True,
    limit=RateLimit.ADDRESS,
    errors=html_error,
)
"""Everything no other surface claims: the dashboard and its pages."""

# The consent flow's sign-in pages and stylesheet are served on the auth host too.
_SIGN_IN = ("app", "auth")

CORE_SURFACES: Final[tuple[Surface, ...]] = (
    Surface(path="/api/", roles=("api",), limit=RateLimit.CREDENTIAL, errors=problem),
    Surface(path="/oauth/", roles=("auth",), html=True, session=True, errors=html_error),
    Surface(path=METADATA_PATH, roles=("auth",), html=True, session=True, errors=html_error),
    *(
        # OAuth clients read JSON errors, never the HTML page the browser paths get.
        Surface(path=path, roles=("auth",), html=True, session=True, errors=oauth_error, exact=True)
        for path in (TOKEN_PATH, REVOKE_PATH, USERINFO_PATH, METADATA_PATH)
    ),
    Surface(path="/login", roles=_SIGN_IN, html=True, session=True, errors=html_error),
    Surface(path="/logout", roles=_SIGN_IN, html=True, session=True, errors=html_error),
    Surface(path="/static/", roles=_SIGN_IN, html=True, limit=RateLimit.NONE, errors=html_error),
    *(
        Surface(path=path, roles=(), limit=RateLimit.NONE, errors=problem, exact=True)
        for path in ("/healthz", "/readyz", "/metrics")
    ),
)
"""The surfaces of core's own adapters: the API, the OAuth server, sign-in, static files
and the operations endpoints (served on every host, never counted)."""


class SurfaceTable:
    """Finds the surface of a path; built once per application."""

    def __init__(self, surfaces: Iterable[Surface], default: Surface = APP) -> None:
        """``ValueError`` for a path declared twice or a role no ``server.hosts`` key names."""
        self.default = default
        exact: dict[str, Surface] = {}
        prefixes: dict[str, Surface] = {}
        for surface in surfaces:
            unknown = [role for role in surface.roles if role not in HOST_ROLES]
            if unknown or not surface.path.startswith("/"):
                raise ValueError(
                    f"surface {surface.path!r}: host roles must be among {', '.join(HOST_ROLES)}"
                    " and the path must start with /"
                )
            found = exact if surface.exact else prefixes
            if surface.path in found:
                raise ValueError(f"the surface {surface.path!r} is declared twice")
            found[surface.path] = surface
        self._exact = exact
        self._prefixes = prefixes
        # Prefixes by the character after the first slash. Within one, a prefix comes before
        # every shorter prefix it starts with (the longest match wins); otherwise they keep
        # the order of declaration, core's first: the API is looked for before the rest.
        self._by_first: dict[str, tuple[tuple[str, Surface], ...]] = {}
        for first in dict.fromkeys(path[1:2] for path in prefixes):
            bucket = [path for path in prefixes if path[1:2] == first]
            depth = {path: sum(path.startswith(other) for other in bucket) for path in bucket}
            ordered = sorted(bucket, key=lambda path: -depth[path])
            self._by_first[first] = tuple((path, prefixes[path]) for path in ordered)
        # A prefix without its slash ("/api") is the role's too, as it always was for hosts;
        # in every other respect it is what the rest of the table makes of it.
        for path, surface in prefixes.items():
            bare = path.rstrip("/")
            if path.endswith("/") and bare and "app" not in surface.roles and bare not in exact:
                exact[bare] = dataclasses.replace(
                    self._by_prefix(bare), path=bare, roles=surface.roles, exact=True
                )

    @classmethod
    def of(cls, integrations: Sequence[Integration]) -> SurfaceTable:
        """Core's surfaces and those of ``integrations``."""
        return cls([*CORE_SURFACES, *(s for i in integrations for s in i.surfaces)])

    def lookup(self, path: str) -> Surface:
        """The surface ``path`` belongs to."""
        surface = self._exact.get(path)
        if surface is not None:
            return surface
        # ``path[1:2]`` is a one-character string, which CPython never allocates anew.
        for prefix, surface in self._by_first.get(path[1:2], ()):
            if path.startswith(prefix):
                return surface
        return self.default

    def _by_prefix(self, path: str) -> Surface:
        for prefix, surface in self._by_first.get(path[1:2], ()):
            if path.startswith(prefix):
                return surface
        return self.default

    def role_of(self, path: str) -> str | None:
        """The host role owning ``path``; None for paths every host serves."""
        roles = self.lookup(path).roles
        return roles[0] if roles else None

    @property
    def surfaces(self) -> tuple[Surface, ...]:
        """Every declared surface, prefixes and whole paths, in no particular order."""
        return (*self._prefixes.values(), *self._exact.values())
