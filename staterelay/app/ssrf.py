"""The SSRF guard of requests to addresses users give (webhooks): every address connected
to must pass the policy.

Two doors lead to a connection and both are guarded. A host name goes through
``GuardedResolver``, which the connector of ``OutgoingHttp.guarded()`` calls for every new
connection, so the addresses checked are exactly the ones connected to (no DNS-rebinding
gap between check and connect). An IP literal never reaches a resolver in aiohttp, so the
caller runs ``check_url``, which refuses forbidden literals (and legacy numeric forms such
as ``127.1``), before any request.

Ports: 80 and 443 only, unless the instance allows private networks or the address is in
the operator's ``allowed_networks``; then any port (a NAS on :8123, a test receiver).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from staterelay.core.netpolicy import AddressPolicy, IPAddress, embedded_ipv4

_LOGGER = logging.getLogger(__name__)

STANDARD_PORTS: Final = frozenset({80, 443})

REFUSED_ADDRESS = "refused: the host is a private, local or reserved address"
REFUSED_NAME = "refused: the host name resolves to a private, local or reserved address"
REFUSED_NUMERIC = "refused: the host is not a canonical IP address"


class AddressRefused(OSError):
    """A destination the policy refuses; the message is safe to show the webhook's owner."""


def is_allow_listed(policy: AddressPolicy, address: IPAddress) -> bool:
    """True when the operator's ``allowed_networks`` name ``address`` (or the IPv4 inside it)."""
    candidates: list[IPAddress] = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in policy.allowed_networks
    )


def refusal(policy: AddressPolicy, address: IPAddress, port: int) -> str | None:
    """Why a delivery may not connect to ``address:port``, or None when it may."""
    if not policy.allows(address):
        return REFUSED_ADDRESS
    if port in STANDARD_PORTS or policy.allow_private_networks or is_allow_listed(policy, address):
        return None
    return (
        f"refused: port {port} is not allowed; deliveries use ports 80 and 443 unless "
        "the address is in webhooks.allowed_networks"
    )


def parse_address(text: str) -> IPAddress | None:
    """The IP address ``text`` spells in canonical form, or None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_url(url: URL, policy: AddressPolicy) -> None:
    """Raise ``AddressRefused`` for an IP-literal URL the policy refuses; names pass on."""
    host = url.raw_host
    port = url.port
    if not host or port is None:
        raise AddressRefused("refused: the URL has no host")
    literal = parse_address(host)
    if literal is None:
        bare = host.rstrip(".")
        if ":" in bare or bare.replace(".", "").isdigit() or _inet_aton_accepts(bare):
            # 127.1, 2130706433, 0x7f.1 and friends: socket maps them onto an address
            # nobody checked, so they are refused outright.
            raise AddressRefused(REFUSED_NUMERIC)
        return
    reason = refusal(policy, literal, port)
    if reason is not None:
        raise AddressRefused(reason)


def _inet_aton_accepts(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except (OSError, UnicodeError, ValueError):
        return False
    return True


class GuardedResolver(AbstractResolver):
    """Resolve with an inner resolver; refuse the whole answer if any address fails the policy.

    Refusing (rather than dropping the bad addresses) is deliberate: a public name that also
    answers with a private address is a rebinding attempt or a split-horizon setup, and a
    delivery must not depend on which of its addresses happens to be tried.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The inner resolver's answers, every one of them allowed."""
        if self._inner is None:
            self._inner = DefaultResolver()
        answers = await self._inner.resolve(host, port, family)
        if not answers:
            raise OSError(f"no address found for {host}")
        for answer in answers:
            address = parse_address(answer["host"])
            reason = (
                REFUSED_ADDRESS
                if address is None
                else refusal(self._policy, address, answer["port"] or port)
            )
            if reason is not None:
                _LOGGER.info(
                    "refused delivery to %s: it resolves to %s port %s",
                    host,
                    answer["host"],
                    answer["port"] or port,
                )
                raise AddressRefused(REFUSED_NAME if reason == REFUSED_ADDRESS else reason)
        return answers

    async def close(self) -> None:
        """Close the inner resolver."""
        if self._inner is not None:
            await self._inner.close()
