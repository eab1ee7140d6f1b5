"""One URL space, several host names: which surfaces each role's host serves.

The surfaces table says which host roles serve a path; ``server.hosts`` names the host of
each role. With no host named, every host serves every path.
"""

from __future__ import annotations

from staterelay.app.integration import Surface
from staterelay.app.surfaces import SurfaceTable
from staterelay.settings import HOST_ROLES, HostsSettings


class HostRouter:
    """Decides whether a host may serve a path; with no hosts configured, every host may."""

    def __init__(self, hosts: HostsSettings, surfaces: SurfaceTable) -> None:
        self._surfaces = surfaces
        self._roles_by_host: dict[str, set[str]] = {}
        for role in HOST_ROLES:
            name = getattr(hosts, role)
            if name:
                self._roles_by_host.setdefault(name.lower().rstrip("."), set()).add(role)

    @property
    def split(self) -> bool:
        """True when hosts are configured per role."""
        return bool(self._roles_by_host)

    def allows(self, host: str | None, path: str) -> bool:
        """True when a request for ``path`` on ``host`` should be served."""
        return self.serves(host, self._surfaces.lookup(path))

    def serves(self, host: str | None, surface: Surface) -> bool:
        """True when ``host`` serves ``surface`` (every host serves surfaces of no role)."""
        if not self._roles_by_host or not surface.roles:
            return True
        name = _strip_port(host or "").lower().rstrip(".")
        roles = self._roles_by_host.get(name)
        return roles is not None and any(role in roles for role in surface.roles)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
