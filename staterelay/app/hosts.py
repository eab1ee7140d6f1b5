"""One URL space, several host names: which prefixes each role's host serves."""

from __future__ import annotations

from staterelay.settings import HostsSettings

ROLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "api": ("/api/",),
    "auth": ("/oauth/", "/.well-known/oauth-authorization-server"),
    "alexa": ("/alexa/",),
    "ifttt": ("/ifttt/",),
}
OPERATIONS = ("/healthz", "/readyz", "/metrics")
# Pages the consent flow needs on the auth host too: its sign-in redirect and stylesheet.
SIGN_IN_PATHS = ("/login", "/logout", "/static/")


def role_of_path(path: str) -> str | None:
    """The role owning ``path``: api, auth, alexa, ifttt, app; None for operations paths."""
    if path in OPERATIONS:
        return None
    for role, prefixes in ROLE_PREFIXES.items():
        for prefix in prefixes:
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                return role
    return "app"


class HostRouter:
    """Decides whether a host may serve a path; with no hosts configured, every host may."""

    def __init__(self, hosts: HostsSettings) -> None:
        self._roles_by_host: dict[str, set[str]] = {}
        for role in ("app", "api", "auth", "alexa", "ifttt"):
            name = getattr(hosts, role)
            if name:
                self._roles_by_host.setdefault(name.lower().rstrip("."), set()).add(role)

    @property
    def split(self) -> bool:
        """True when hosts are configured per role."""
        return bool(self._roles_by_host)

    def allows(self, host: str | None, path: str) -> bool:
        """True when a request for ``path`` on ``host`` should be served."""
        if not self._roles_by_host:
            return True
        role = role_of_path(path)
        if role is None:
            return True
        name = _strip_port(host or "").lower().rstrip(".")
        roles = self._roles_by_host.get(name, set())
        if role == "app" and "auth" in roles and path.startswith(SIGN_IN_PATHS):
            return True
        return role in roles


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
