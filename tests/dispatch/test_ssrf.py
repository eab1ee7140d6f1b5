"""The SSRF guard: forbidden addresses are refused before any packet leaves.

Every test here stubs DNS (a fake inner resolver) and replaces socket connects with a
recorder that fails, so nothing is ever sent to a non-loopback address; the recorder also
proves which address a connection would have gone to.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import aiohappyeyeballs
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, strategies as st
from yarl import URL

from staterelay.app.ssrf import AddressRefused, GuardedResolver, check_url, refusal
from staterelay.core import Core
from staterelay.core.netpolicy import AddressPolicy, embedded_ipv4, is_public
from staterelay.core.records import OutboxItem, Webhook
from staterelay.integrations.webhooks import WebhookSink
from tests.dispatch.conftest import HookFactory, Receiver

FORBIDDEN = [
    "127.0.0.1",
    "10.0.0.1",
    "169.254.169.254",
    "::1",
    "::ffff:127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "100.64.0.1",
    "192.168.1.20",
    "0.0.0.0",
    "224.0.0.1",
    "fe80::1",
    "fd00::1",
    "2002:7f00:1::",
    "::127.0.0.1",
]
# IPv6 outside 2000::/3 that ``ipaddress`` calls global: IPv4-translated 127.0.0.1
# (::ffff:0:0:0/96), reserved ::/8, deprecated site-local fec0::/10; and special ranges
# inside 2000::/3 (documentation, IETF protocol assignments).
NOT_GLOBAL_UNICAST_V6 = ["::ffff:0:7f00:1", "::1:7f00:1", "fec0::1"]
SPECIAL_V6 = ["2001:db8::1", "3fff::1", "2001:2::1", "2001:20::1", "5f00::1", "4000::1"]
FORBIDDEN += NOT_GLOBAL_UNICAST_V6 + SPECIAL_V6
PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
LAN = AddressPolicy.from_settings(False, ["192.168.1.0/24"])


class StubResolver(AbstractResolver):
    """DNS from a dictionary; records every name asked for."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The configured answers for ``host``."""
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every connection attempt, recorded and refused; no socket ever connects.

    Request it last, after any server fixture, so those servers start before the stubs.
    """
    attempts: list[tuple[Any, ...]] = []

    def refuse(address: Any) -> OSError:
        attempts.append(tuple(address[:2]) if isinstance(address, tuple) else (address,))
        return OSError(errno.ECONNREFUSED, "Connection refused (stubbed by the test)")

    async def start_connection(addr_infos: Sequence[Any], **_: Any) -> socket.socket:
        for info in addr_infos:
            attempts.append(tuple(info[4][:2]))
        raise OSError(errno.ECONNREFUSED, "Connection refused (stubbed by the test)")

    def socket_connect(self: socket.socket, address: Any) -> None:
        raise refuse(address)

    def socket_connect_ex(self: socket.socket, address: Any) -> int:
        refuse(address)
        return errno.ECONNREFUSED

    async def loop_connect(*args: Any, **kwargs: Any) -> Any:
        raise refuse(args[1:3] if len(args) >= 3 else ("loop", kwargs.get("host")))

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(aiohappyeyeballs, "start_connection", start_connection)
    monkeypatch.setattr(socket.socket, "connect", socket_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", socket_connect_ex)
    monkeypatch.setattr(loop, "create_connection", loop_connect)
    monkeypatch.setattr(loop, "sock_connect", loop_connect)
    return attempts


def _item(webhook: Webhook) -> OutboxItem:
    return OutboxItem(
        id=1,
        tenant_id=webhook.tenant_id,
        sink="webhook",
        destination=webhook.id,
        event_id="msg_ssrf",
        event_type="state.changed",
        device_id=None,
        payload={"source": "api"},
        attempts=0,
        created_at=0.0,
    )


# the policy itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("address", FORBIDDEN)
def test_default_policy_refuses(address: str) -> None:
    """Private, local, reserved, CGNAT, multicast and wrapped forms are all refused."""
    assert refusal(AddressPolicy(), _ip(address), 443) is not None


@given(st.ip_addresses(v=6))
def test_ipv6_is_allowed_only_in_global_unicast(address: ipaddress.IPv6Address) -> None:
    """Whatever IPv6 address the default policy lets through is in 2000::/3 and global,
    unless it carries an IPv4 address that is public itself (NAT64, 6to4, mapped)."""
    if not AddressPolicy().allows(address):
        return
    inner = embedded_ipv4(address)
    if inner is not None:
        assert is_public(inner)
    else:
        assert address in ipaddress.ip_network("2000::/3")
        assert address.is_global


def test_allow_list_lets_its_network_through_on_any_port() -> None:
    """192.168.1.0/24 allow-listed: its addresses (and IPv4-mapped forms) pass, others not."""
    assert LAN.allows(_ip("192.168.1.20"))
    assert refusal(LAN, _ip("192.168.1.20"), 8123) is None
    assert refusal(LAN, _ip("::ffff:192.168.1.20"), 8123) is None
    assert refusal(LAN, _ip("192.168.2.20"), 80) is not None
    assert refusal(LAN, _ip("10.0.0.1"), 80) is not None


def test_public_addresses_use_standard_ports_only() -> None:
    """Public receivers are reached on 80 and 443; other ports need the operator's say."""
    assert refusal(AddressPolicy(), _ip(PUBLIC_V4), 443) is None
    assert refusal(AddressPolicy(), _ip(PUBLIC_V6), 80) is None
    assert "port 22" in (refusal(AddressPolicy(), _ip(PUBLIC_V4), 22) or "")
    homelab = AddressPolicy(allow_private_networks=True)
    assert refusal(homelab, _ip(PUBLIC_V4), 8080) is None
    assert refusal(homelab, _ip("127.0.0.1"), 8080) is None


# the resolver ----------------------------------------------------------------------------------
@pytest.mark.parametrize("address", FORBIDDEN)
async def test_resolver_refuses_names_that_resolve_to_forbidden_addresses(address: str) -> None:
    """A name the stub DNS maps to a forbidden address is refused, without revealing it."""
    resolver = GuardedResolver(AddressPolicy(), StubResolver({"evil.test": [address]}))
    with pytest.raises(AddressRefused) as refused:
        await resolver.resolve("evil.test", 443)
    assert address not in str(refused.value)


async def test_resolver_refuses_when_any_answer_is_forbidden() -> None:
    """One private answer among public ones refuses the whole name (rebinding defence)."""
    stub = StubResolver({"mixed.test": [PUBLIC_V4, "10.0.0.1"], "mixed6.test": [PUBLIC_V6, "::1"]})
    resolver = GuardedResolver(AddressPolicy(), stub)
    with pytest.raises(AddressRefused):
        await resolver.resolve("mixed.test", 443)
    with pytest.raises(AddressRefused):
        await resolver.resolve("mixed6.test", 443)


async def test_resolver_passes_public_answers_on_standard_ports() -> None:
    """Public answers come back unchanged; a non-standard port is refused."""
    resolver = GuardedResolver(
        AddressPolicy(), StubResolver({"hooks.test": [PUBLIC_V4, PUBLIC_V6]})
    )
    answers = await resolver.resolve("hooks.test", 443)
    assert [a["host"] for a in answers] == [PUBLIC_V4, PUBLIC_V6]
    with pytest.raises(AddressRefused, match="port 8443"):
        await resolver.resolve("hooks.test", 8443)


async def test_resolver_allow_list() -> None:
    """With 192.168.1.0/24 allow-listed a NAS name resolves; a neighbour network does not."""
    stub = StubResolver({"nas.test": ["192.168.1.20"], "router.test": ["192.168.0.1"]})
    resolver = GuardedResolver(LAN, stub)
    assert [a["host"] for a in await resolver.resolve("nas.test", 8123)] == ["192.168.1.20"]
    with pytest.raises(AddressRefused):
        await resolver.resolve("router.test", 80)


# literal URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://100.64.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.0.0.1./",
        "https://8.8.8.8:22/",
    ],
)
def test_literal_urls_are_refused(url: str) -> None:
    """IP literals skip the resolver in aiohttp, so they are checked before connecting."""
    with pytest.raises(AddressRefused):
        check_url(URL(url), AddressPolicy())


@pytest.mark.parametrize("address", NOT_GLOBAL_UNICAST_V6)
def test_literal_ipv6_outside_global_unicast_is_refused(address: str) -> None:
    """The three forms issue 15 found open are refused as URL literals too."""
    with pytest.raises(AddressRefused):
        check_url(URL(f"http://[{address}]/hook"), AddressPolicy())


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://8.8.8.8/", "https://[2606:4700::1111]/"]
)
def test_names_and_public_literals_pass_the_literal_check(url: str) -> None:
    """Names are left to the resolver; public literals on standard ports pass."""
    check_url(URL(url), AddressPolicy())


# end to end through the sink, with connects stubbed -----------------------------------------
@pytest.mark.parametrize("address", FORBIDDEN[:7])
async def test_sink_refuses_forbidden_names_without_connecting(
    core: Core, make_hook: HookFactory, connects: list[tuple[Any, ...]], address: str
) -> None:
    """A webhook whose name resolves to a forbidden address fails, and no socket connects."""
    webhook, secret = await make_hook("http://receiver.test/hook")
    stub = StubResolver({"receiver.test": [address]})
    sink = WebhookSink(
        core, timeout_seconds=1.0, max_response_bytes=1024, policy=AddressPolicy(), resolver=stub
    )
    try:
        result = await sink.deliver(_item(webhook))
    finally:
        await sink.close()
    assert not result.delivered
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("refused")
    assert address not in result.error
    assert secret not in result.error
    assert stub.asked == ["receiver.test"]
    assert connects == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]",
             "[64:ff9b::a9fe:a9fe]", "100.64.0.1"],
)  # fmt: skip
async def test_sink_refuses_literal_urls_before_connecting(
    core: Core,
    make_hook: HookFactory,
    receiver: Receiver,
    connects: list[tuple[Any, ...]],
    host: str,
) -> None:
    """Literal forbidden addresses never reach the resolver or a socket."""
    port = receiver.server.port if receiver.server else 80
    webhook, _ = await make_hook(f"http://{host}:{port}/hook")
    stub = StubResolver({})
    sink = WebhookSink(
        core, timeout_seconds=1.0, max_response_bytes=1024, policy=AddressPolicy(), resolver=stub
    )
    try:
        result = await sink.deliver(_item(webhook))
    finally:
        await sink.close()
    assert not result.delivered
    assert result.error is not None
    assert result.error.startswith("refused")
    assert stub.asked == []
    assert connects == []
    assert receiver.requests == []


@pytest.mark.parametrize("address", NOT_GLOBAL_UNICAST_V6)
async def test_sink_refuses_ipv6_names_outside_global_unicast_without_connecting(
    core: Core, make_hook: HookFactory, connects: list[tuple[Any, ...]], address: str
) -> None:
    """The DNS forms: a name whose AAAA answer is one of them is refused before any connect."""
    webhook, _ = await make_hook("https://receiver6.test/hook")
    stub = StubResolver({"receiver6.test": [address]})
    sink = WebhookSink(
        core, timeout_seconds=1.0, max_response_bytes=1024, policy=AddressPolicy(), resolver=stub
    )
    try:
        result = await sink.deliver(_item(webhook))
    finally:
        await sink.close()
    assert not result.delivered
    assert result.error == "refused: the host name resolves to a private, local or reserved address"
    assert stub.asked == ["receiver6.test"]
    assert connects == []


async def test_sink_connects_to_allow_listed_lan_address(
    core: Core, make_hook: HookFactory, connects: list[tuple[Any, ...]]
) -> None:
    """An allow-listed LAN address passes the guard: the (stubbed) connect goes exactly there."""
    webhook, _ = await make_hook("http://nas.test:8123/api/webhook/abc")
    stub = StubResolver({"nas.test": ["192.168.1.20"]})
    sink = WebhookSink(
        core, timeout_seconds=1.0, max_response_bytes=1024, policy=LAN, resolver=stub
    )
    try:
        result = await sink.deliver(_item(webhook))
    finally:
        await sink.close()
    assert connects == [("192.168.1.20", 8123)]
    assert not result.delivered
    assert result.error is not None
    assert result.error.startswith("connection failed")
    assert "abc" not in result.error


def _ip(text: str) -> Any:
    return ipaddress.ip_address(text)
