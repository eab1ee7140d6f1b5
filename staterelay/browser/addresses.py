"""The addresses people on the network reach a server by, when it listens on all of them."""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import urlsplit

import ifaddr

from staterelay.settings import Settings

_LOGGER = logging.getLogger(__name__)

WILDCARDS = frozenset({"0.0.0.0", "::", "*", ""})


def is_wildcard(host: str) -> bool:
    """True for a listen address that means every interface."""
    return host.strip("[]") in WILDCARDS


def public_url_is_default(public_url: str, port: int) -> bool:
    """True when ``public_url`` is the one StateRelay derives when none is set."""
    return public_url.rstrip("/") == f"http://localhost:{port}"


def network_base_urls(host: str, port: int) -> list[str]:
    """``http://name.local:port`` and ``http://address:port`` for each non-loopback address.

    For a wildcard listen address: the machine's mDNS name first, then every IPv4 address,
    then global IPv6 addresses when listening on ``::``. For a single address: that one.
    Loopback and link-local addresses are left out (other machines cannot use them).
    """
    bare = host.strip("[]")
    if not is_wildcard(bare):
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            return [f"http://{bare}:{port}"]
        return [] if address.is_loopback else [_url(address, port)]
    urls = []
    name = socket.gethostname().split(".")[0]
    if name and name != "localhost":
        urls.append(f"http://{name}.local:{port}")
    with_v6 = bare == "::"
    for address in _interface_addresses():
        if address.version == 6 and not with_v6:
            continue
        urls.append(_url(address, port))
    return list(dict.fromkeys(urls))


def _interface_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The machine's usable addresses, IPv4 first."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    try:
        adapters = ifaddr.get_adapters()
    except OSError as exc:  # no way to list interfaces: print no addresses, not a traceback
        _LOGGER.debug("cannot list network interfaces: %s", exc)
        return found
    for adapter in adapters:
        for ip in adapter.ips:
            raw = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            try:
                address = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            found.append(address)
    return sorted(found, key=lambda a: (a.version, int(a)))


def _url(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}"


def reachable_urls(settings: Settings) -> list[str]:
    """The base URLs to offer people: the public URL, or each network address when unset."""
    server = settings.server
    public = settings.public_url
    if not (is_wildcard(server.host) and public_url_is_default(public, server.port)):
        return [public]
    return [*network_base_urls(server.host, server.port), public]


def unreachable_reason(url: str) -> str | None:
    """Why a cloud service (Amazon, IFTTT) could not use ``url``; None when it could."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "it points at this machine (localhost)"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return "it points at this machine (a loopback address)"
    except ValueError:
        pass
    if parts.scheme != "https":
        return "it is not https"
    return None
