"""``/metrics``: who may read it, what it counts, and that applications never share a count."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.app.metrics import is_loopback
from staterelay.core import Core
from staterelay.core.records import SOURCES
from staterelay.settings import MetricsSettings, Settings
from tests.conftest import Account
from tests.dispatch.conftest import Receiver, wait_until
from tests.skips import unavailable

Client = TestClient[web.Request, web.Application]
TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> Receiver:
    """A recording webhook receiver on 127.0.0.1."""
    recorder = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    recorder.server = await aiohttp_server(app)
    return recorder


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and label set."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the exposition lacks it."""
    return samples(text).get((name, frozenset(labels.items())))


async def scrape(client: Client, **headers: str) -> str:
    """GET /metrics and return the text (asserting 200)."""
    response = await client.get("/metrics", headers=headers)
    text = await response.text()
    assert response.status == 200, text
    assert response.content_type == "text/plain"
    return text


async def test_loopback_reads_metrics_in_prometheus_format(
    client: Client, account: Account
) -> None:
    """From 127.0.0.1 with no token configured, the endpoint answers with every family."""
    await client.get("/healthz")
    text = await scrape(client)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "http_requests",
        "http_request_duration_seconds",
        "device_state_changes",
        "alexa_changereports_sent",
        "alexa_changereport_failures",
        "ifttt_realtime_notifications",
        "webhook_deliveries",
        "outbox_deliveries",
        "oauth_token_errors",
        "outbox_pending_rows",
        "outbox_dead_rows",
        "outbox_oldest_pending_age_seconds",
        "database_pool_connections",
        "database_pool_max_connections",
        "database_pool_in_use",
        "database_pool_waiting",
        "process_resident_memory_bytes",
    } <= names
    assert value(text, "http_requests_total", route="/healthz", method="GET", status="200") == 1
    assert value(text, "webhook_deliveries_total", outcome="dead") == 0
    assert value(text, "database_pool_connections") == 2  # SQLite: a reader and the writer


async def test_routes_are_templates_and_unknown_paths_one_label(
    client: Client, account: Account
) -> None:
    """Requests are labelled by route template; any unknown path is ``unmatched``."""
    for device_id in ("dev_one", "dev_two", "dev_three"):
        response = await client.get(f"/api/v1/devices/{device_id}", headers=account.headers)
        assert response.status == 404
    for path in ("/no/such/page-secret-1", "/api/v1/nothing-here-2", "/wp-login.php"):
        await client.get(path)
    text = await scrape(client)
    assert (
        value(
            text,
            "http_requests_total",
            route="/api/v1/devices/{device_id}",
            method="GET",
            status="404",
        )
        == 3
    )
    unmatched = sum(
        v
        for (name, labels), v in samples(text).items()
        if name == "http_requests_total" and ("route", "unmatched") in labels
    )
    assert unmatched == 3
    for raw in ("dev_one", "page-secret-1", "nothing-here-2", "wp-login"):
        assert raw not in text


async def test_state_changes_are_counted_by_source(
    client: Client, core: Core, account: Account
) -> None:
    """API changes and core changes made for other surfaces count under their source;
    a write that changes nothing does not count."""
    created = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Lamp"}, headers=account.headers
    )
    lamp = (await created.json())["id"]
    for power in ("ON", "ON", "OFF"):
        response = await client.put(
            f"/api/v1/devices/{lamp}/state", json={"power": power}, headers=account.headers
        )
        assert response.status == 200, await response.text()
    principal = await core.auth.authenticate(account.key)
    await core.devices.set_state(principal, lamp, {"power": "ON"}, source="alexa")
    text = await scrape(client)
    assert value(text, "device_state_changes_total", source="api") == 2
    assert value(text, "device_state_changes_total", source="alexa") == 1


async def test_two_applications_never_share_counts(
    aiohttp_client: Callable[..., Any], settings: Settings, tmp_path: Any
) -> None:
    """Each app has a registry of its own: traffic to one is not seen by the other."""
    first: Client = await aiohttp_client(create_app(settings))
    other_settings = dataclasses.replace(settings, data_dir=tmp_path / "other")
    second: Client = await aiohttp_client(create_app(other_settings))
    for _ in range(3):
        await first.get("/readyz")
    readyz = {"route": "/readyz", "method": "GET", "status": "200"}
    assert value(await scrape(first), "http_requests_total", **readyz) == 3
    assert value(await scrape(second), "http_requests_total", **readyz) is None


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ],
)
async def test_requests_through_a_local_proxy_are_refused(
    client: Client, header: dict[str, str]
) -> None:
    """A reverse proxy on this machine connects from loopback for anyone on the internet:
    a loopback request carrying forwarding headers is not local."""
    response = await client.get("/metrics", headers=header)
    assert response.status == 403
    assert "http_requests" not in await response.text()


async def test_a_token_is_required_when_configured(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """With metrics.token set, even loopback needs the bearer token; others get 401."""
    app = create_app(dataclasses.replace(settings, metrics=MetricsSettings(token=TOKEN)))
    client: Client = await aiohttp_client(app)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "http_requests" not in await response.text()
    text = await scrape(client, Authorization=f"Bearer {TOKEN}")
    assert "http_requests_total" in text


async def test_disabled_metrics_are_not_served(
    aiohttp_client: Callable[..., Any], settings: Settings
) -> None:
    """metrics.enabled: false removes the endpoint."""
    app = create_app(dataclasses.replace(settings, metrics=MetricsSettings(enabled=False)))
    client: Client = await aiohttp_client(app)
    assert (await client.get("/metrics")).status == 404


def _outward_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_other_peers_are_refused_whatever_they_forward(settings: Settings) -> None:
    """Without a token, a peer that is not loopback gets 403, even claiming loopback in
    X-Forwarded-For."""
    address = _outward_address()
    if address is None:
        unavailable("this machine has no address besides loopback")
    app = create_app(settings)
    server = TestServer(app, host="0.0.0.0")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            spoofed = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
            url = f"http://{address}:{server.port}/metrics"
            async with session.get(url, headers=spoofed) as response:
                assert response.status == 403
                assert "http_requests" not in await response.text()
            local = f"http://127.0.0.1:{server.port}/metrics"
            async with session.get(local) as response:
                assert response.status == 200
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("fe80::1%eth0", 5000, 0, 2), False),
        (("10.0.0.2", 5000), False),
        (("::ffff:10.0.0.2", 5000, 0, 0), False),
        ("/run/staterelay.sock", True),
        (None, False),
        (("not an address", 1), False),
    ],
)
def test_loopback_decision(peer: object, allowed: bool) -> None:
    """Only loopback addresses (and Unix sockets) count as local."""
    assert is_loopback(peer) is allowed


async def test_token_errors_are_counted_by_code(client: Client, core: Core) -> None:
    """invalid_client and invalid_grant refusals of /oauth/token count under their code."""
    record, secret = await core.oauth.create_client(
        client_id="metrics-client",
        name="Metrics client",
        redirect_uris=["https://client.example.com/callback"],
        token_endpoint_auth_method="client_secret_post",
        scopes=["devices"],
    )
    bad_code = {
        "grant_type": "authorization_code",
        "code": "src_not-a-real-code",
        "redirect_uri": "https://client.example.com/callback",
        "client_id": record.id,
    }
    wrong = await client.post("/oauth/token", data={**bad_code, "client_secret": "srs_wrong"})
    assert wrong.status == 401
    for _ in range(2):
        refused = await client.post("/oauth/token", data={**bad_code, "client_secret": secret})
        assert refused.status == 400
        assert (await refused.json())["error"] == "invalid_grant"
    text = await scrape(client)
    assert value(text, "oauth_token_errors_total", error="invalid_client") == 1
    assert value(text, "oauth_token_errors_total", error="invalid_grant") == 2
    assert secret not in text


async def test_webhook_outcomes_and_outbox_gauges(
    client: Client, core: Core, account: Account, receiver: Receiver
) -> None:
    """A delivered webhook counts as delivered; pending rows show in the outbox gauges."""
    created = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Lamp"}, headers=account.headers
    )
    lamp = (await created.json())["id"]
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url(), "event_types": ["state.changed"]},
        headers=account.headers,
    )
    assert hook.status == 201
    await client.put(f"/api/v1/devices/{lamp}/state", json={"power": "ON"}, headers=account.headers)
    await wait_until(lambda: receiver.requests)

    async def delivered() -> bool:
        text = await scrape(client)
        return value(text, "webhook_deliveries_total", outcome="delivered") == 1

    await wait_until(delivered)

    async def drained() -> bool:  # the result is on disk with the next commit, or within 1 s
        return value(await scrape(client), "outbox_pending_rows") == 0

    await wait_until(drained)
    text = await scrape(client)
    assert value(text, "outbox_deliveries_total", sink="webhook", outcome="delivered") == 1
    assert value(text, "outbox_pending_rows") == 0
    assert value(text, "outbox_oldest_pending_age_seconds") == 0


async def test_each_core_counts_only_its_own_changes(settings: Settings, tmp_path: Any) -> None:
    """Two cores in one process (two apps) keep separate counters."""
    first = create_app(settings)[CORE_KEY]
    second = create_app(dataclasses.replace(settings, data_dir=tmp_path / "b"))[CORE_KEY]
    first.counters.state_changed("api")
    assert first.counters.state_changes["api"] == 1
    assert second.counters.state_changes["api"] == 0


async def test_label_values_stay_bounded(core: Core) -> None:
    """Unknown OAuth error codes and outcomes collapse to ``other``; sources are capped."""
    counters = core.counters
    counters.oauth_token_error("made_up_error")
    counters.delivery("webhook", "weird", sent=False)
    for n in range(200):
        counters.state_changed(f"source-{n}")
    assert counters.oauth_token_errors == {"other": 1}
    assert counters.deliveries_of("webhook") == {"other": 1}
    assert len(counters.state_changes) <= 65
    assert counters.state_changes["other"] > 0


async def test_a_fresh_process_shows_every_known_label_at_zero(client: Client) -> None:
    """Before anything happened, each labelled counter has its known series, all 0, so rate()
    and the alert rules have something to work on from the first scrape."""
    text = await scrape(client)
    for source in SOURCES:
        assert value(text, "device_state_changes_total", source=source) == 0, source
    for sink in ("webhook", "alexa", "ifttt"):
        for outcome in ("delivered", "retry", "dead"):
            assert value(text, "outbox_deliveries_total", sink=sink, outcome=outcome) == 0
    for error in ("invalid_grant", "invalid_client", "invalid_request", "other"):
        assert value(text, "oauth_token_errors_total", error=error) == 0, error
    for outcome in ("retry", "dead"):
        assert value(text, "alexa_changereport_failures_total", outcome=outcome) == 0
    for cap in ("credential", "household"):
        assert value(text, "live_connections_refused_total", cap=cap) == 0
    assert value(text, "live_connections") == 0
    assert value(text, "database_storage_full_errors_total") == 0


async def test_readiness_and_free_space_are_exported(client: Client, settings: Settings) -> None:
    """``staterelay_ready`` is 1 while /readyz is 200; free bytes are those of the data dir's
    file system, beside the configured floor."""
    text = await scrape(client)
    assert value(text, "staterelay_ready") == 1
    free = value(text, "database_free_bytes")
    assert free is not None
    info = os.statvfs(settings.data_dir)
    assert abs(free - info.f_bavail * info.f_frsize) < 64 * 1024 * 1024
    assert value(text, "database_min_free_bytes") == 64 * 1024 * 1024
