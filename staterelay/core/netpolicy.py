"""Which network addresses outbound deliveries may reach (the SSRF policy).

Only public unicast addresses are allowed unless the operator allows private networks for a
homelab, instance-wide. Tricky forms are unwrapped first: IPv4-mapped and IPv4-compatible
IPv6, NAT64 and 6to4 all embed an IPv4 address that decides. Any other IPv6 address must be
global unicast (``2000::/3``), outside the special ranges carved from it: ``ipaddress``
calls much of the unassigned and deprecated space "global" (``fec0::/10``, ``::/8``,
``::ffff:0:0:0/96``), and a host's stack may still route those somewhere local.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from staterelay.core.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # CGNAT: is_private is False but it is not the internet
        "192.0.0.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "255.255.255.255/32",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTO4 = ipaddress.ip_network("2002::/16")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_IPV6_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, AS112, AMT
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)

URL_MAX = 2048
STANDARD_PORTS = frozenset({80, 443})


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    packed = address.packed
    if address in _NAT64:
        return ipaddress.IPv4Address(packed[12:])
    if address in _SIXTO4:
        return ipaddress.IPv4Address(packed[2:6])
    if packed[:12] == bytes(12) and int(address) > 1:
        return ipaddress.IPv4Address(packed[12:])  # deprecated IPv4-compatible ::a.b.c.d
    return None


def is_public(address: IPAddress) -> bool:
    """True for a global unicast address that is not one of the special ranges."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    if isinstance(address, ipaddress.IPv6Address) and (
        address not in _GLOBAL_UNICAST or any(address in network for network in _IPV6_REFUSED)
    ):
        return False
    if address.is_multicast or not address.is_global:
        return False
    return not any(address in network for network in _ALWAYS_REFUSED if address.version == 4)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The instance's outbound address policy."""

    allow_private_networks: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, allow_private: bool, networks: Iterable[str]) -> AddressPolicy:
        """Build from the ``webhooks`` settings."""
        return cls(
            allow_private_networks=allow_private,
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
        )

    def allows(self, address: IPAddress) -> bool:
        """True when a delivery may connect to ``address``."""
        if self.allow_private_networks:
            return not address.is_multicast and not address.is_unspecified
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        for candidate in candidates:
            for network in self.allowed_networks:
                if candidate.version == network.version and candidate in network:
                    return True
        return is_public(address)


def validate_webhook_url(url: object, policy: AddressPolicy) -> str:
    """An http(s) URL with a host; a literal IP address must pass the policy already."""
    if not isinstance(url, str):
        raise InvalidInput("url must be a string", field="url")
    text = url.strip()
    if len(text) > URL_MAX:
        raise InvalidInput(f"url must be at most {URL_MAX} characters", field="url")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidInput("url is not a valid URL", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an http:// or https:// URL with a host", field="url")
    if parts.username or parts.password:
        raise InvalidInput("url must not carry credentials; use the signature", field="url")
    if port == 0:
        raise InvalidInput("url has an invalid port", field="url")
    effective_port = port if port is not None else (443 if parts.scheme == "https" else 80)
    if (
        effective_port not in STANDARD_PORTS
        and not policy.allow_private_networks
        and not policy.allowed_networks
    ):
        raise InvalidInput(
            "url must use port 80 or 443; other ports are only for allow-listed networks",
            field="url",
        )
    try:
        literal: IPAddress | None = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and not policy.allows(literal):
        raise InvalidInput(
            "url points at a private, local or reserved address, which this instance refuses",
            field="url",
        )
    if (
        literal is None
        and parts.hostname.lower().rstrip(".") in ("localhost",)
        and not (policy.allow_private_networks)
    ):
        raise InvalidInput("url points at this machine, which this instance refuses", field="url")
    return text
