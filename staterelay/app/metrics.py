"""The Prometheus ``/metrics`` endpoint: HTTP traffic, what core counted, outbox, pool, disk
and Redis gauges, and each integration's own collectors.

Every application gets a registry of its own, so applications built in one process (tests,
benches) never share a count. HTTP requests are observed by the request middleware under
their route template (``/api/v1/devices/{id}``) or ``unmatched``, never the raw path, so the
number of series stays bounded. Core's ``Counters`` and the outbox, database and readiness
gauges are read when Prometheus scrapes. A labelled counter shows every label value it knows
of from the start, at 0, so a fresh replica's ``rate()`` and alert expressions have series
to work on before the first event.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Final, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from staterelay.app.problems import problem_response
from staterelay.core import Core, Readiness
from staterelay.core.counters import DELIVERY_OUTCOMES, LIVE_CAPS, OAUTH_TOKEN_ERRORS, Counters
from staterelay.core.errors import Forbidden, StateRelayError
from staterelay.core.records import SOURCES, OutboxStats
from staterelay.settings import MetricsSettings

_LOGGER = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"
UNMATCHED: Final = "unmatched"
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
# The request duration buckets (seconds), those of a default prometheus_client Histogram.
BUCKETS: Final = tuple(b for b in Histogram.DEFAULT_BUCKETS if b != float("inf"))
BUCKET_LABELS: Final = (*(repr(bound) for bound in BUCKETS), "+Inf")  # the ``le`` values


class RedisHealth(Protocol):
    """What the Redis link of a process tells about itself (``staterelay.replicas``)."""

    @property
    def connected(self) -> bool:
        """True while Redis answers."""

    @property
    def reconnects(self) -> int:
        """Times Redis answered again after it had failed."""

    @property
    def publish_failures(self) -> int:
        """Events that could not be published to the other replicas."""


class AppMetrics:
    """One application's registry: HTTP metrics it observes and the collectors it reads.

    ``sinks`` are the outbox sink names whose delivery counts show from the start, at 0;
    ``collectors`` are the integrations' own.
    """

    def __init__(
        self,
        core: Core,
        redis: RedisHealth | None = None,
        *,
        sinks: Iterable[str] = (),
        collectors: Sequence[Collector] = (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpCollector()
        self.registry.register(self.http)
        self.core_collector = CoreCollector(core, sinks=sinks)
        self.registry.register(self.core_collector)
        for collector in collectors:
            self.registry.register(collector)
        if redis is not None:
            self.registry.register(RedisCollector(redis))
        ProcessCollector(registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.http.observe(route, method, status, seconds)

    async def exposition(self) -> bytes:
        """The text format of every metric, gauges read fresh from the database."""
        await self.core_collector.refresh()
        return generate_latest(self.registry)


class _Series:
    """The requests of one (route, method, status): count, total time, per-bucket counts."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf


class HttpCollector(Collector):
    """``http_requests_total`` and ``http_request_duration_seconds``, counted on the loop.

    The same families ``prometheus_client``'s Counter and Histogram would expose, kept as
    plain numbers: every request is observed on the event loop thread, and so is every
    scrape, so the client library's lock per increment (three of them per request) buys
    nothing here.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, method if method in KNOWN_METHODS else "other", status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.count += 1
        series.total += seconds
        series.buckets[bisect_left(BUCKETS, seconds)] += 1

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Both families, one sample set per (route, method, status) seen."""
        labels = ("route", "method", "status")
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=labels,
        )
        durations = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route template, method and status.",
            labels=labels,
        )
        for (route, method, status), series in sorted(self._series.items()):
            values = (route, method, str(status))
            requests.add_metric(values, series.count)
            cumulative = list(accumulate(series.buckets))
            durations.add_metric(
                values,
                buckets=list(zip(BUCKET_LABELS, cumulative, strict=True)),
                sum_value=series.total,
            )
        yield requests
        yield durations


class CoreCollector(Collector):
    """Reads core's counters, the outbox and the connection pool at scrape time."""

    def __init__(self, core: Core, *, sinks: Iterable[str] = ()) -> None:
        self._core = core
        self._sinks = frozenset(sinks)
        self._outbox: OutboxStats | None = None
        self._outbox_read_at = 0.0
        self._readiness = Readiness(False)

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are made afresh at each scrape."""
        return []

    async def refresh(self) -> None:
        """Query the outbox and readiness; a database that does not answer leaves the
        outbox gauges out and counts as not ready."""
        try:
            self._readiness = await self._core.readiness()
        except Exception:
            _LOGGER.warning("metrics: readiness could not be read", exc_info=True)
            self._readiness = Readiness(False)
        try:
            self._outbox = await self._core.outbox.stats()
            self._outbox_read_at = self._core.clock()
        except Exception:
            _LOGGER.warning("metrics: the outbox could not be read", exc_info=True)
            self._outbox = None

    def collect(self) -> Iterator[Metric]:
        """Every family core and the store can tell."""
        counters = self._core.counters
        yield GaugeMetricFamily(
            "staterelay_ready",
            "1 when /readyz would answer 200 (database answers, migrated, disk has room).",
            value=1 if self._readiness.ready else 0,
        )
        yield from _counter_families(counters, self._sinks)
        yield from _live_families(counters)
        yield from self._outbox_families()
        yield from self._pool_families()
        yield from self._storage_families()

    def _outbox_families(self) -> Iterator[Metric]:
        stats = self._outbox
        if stats is None:
            return
        yield GaugeMetricFamily(
            "outbox_pending_rows", "Outbox rows waiting to be delivered.", value=stats.pending
        )
        yield GaugeMetricFamily(
            "outbox_dead_rows", "Outbox rows given up on and kept for review.", value=stats.dead
        )
        age = 0.0
        if stats.oldest_pending_at is not None:
            age = max(0.0, self._outbox_read_at - stats.oldest_pending_at)
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox row (0 when none waits).",
            value=age,
        )

    def _pool_families(self) -> Iterator[Metric]:
        try:
            pool = self._core.store.pool_stats()
        except RuntimeError:
            return  # the database is not open
        yield GaugeMetricFamily(
            "database_pool_connections", "Open database connections.", value=pool.size
        )
        yield GaugeMetricFamily(
            "database_pool_max_connections",
            "The most database connections this process opens.",
            value=pool.max_size,
        )
        yield GaugeMetricFamily(
            "database_pool_in_use", "Database connections busy right now.", value=pool.in_use
        )
        if pool.waiting is not None:
            yield GaugeMetricFamily(
                "database_pool_waiting",
                "Callers waiting for a connection (SQLite: writes queued for the writer).",
                value=pool.waiting,
            )

    def _storage_families(self) -> Iterator[Metric]:
        storage = self._core.store.storage_stats()
        if storage.free_bytes is not None:
            yield GaugeMetricFamily(
                "database_free_bytes",
                "Bytes free on the file system holding the database (SQLite).",
                value=storage.free_bytes,
            )
            yield GaugeMetricFamily(
                "database_min_free_bytes",
                "database.min_free_mb in bytes: below it the process reports not ready.",
                value=self._core.config.min_free_bytes,
            )
        yield CounterMetricFamily(
            "database_storage_full_errors",
            "Writes refused because the database had no room (answered 507 storage_full).",
            value=storage.full_errors,
        )


def _counter_families(counters: Counters, sinks: frozenset[str]) -> Iterator[Metric]:
    changes = CounterMetricFamily(
        "device_state_changes",
        "Device state changes made in this process, by the surface they came from.",
        labels=("source",),
    )
    for source in sorted(set(SOURCES) | set(counters.state_changes)):
        changes.add_metric((source,), counters.state_changes.get(source, 0))
    yield changes

    generic = CounterMetricFamily(
        "outbox_deliveries",
        "Outbox delivery attempts, by sink and outcome (delivered, retry, dead).",
        labels=("sink", "outcome"),
    )
    by_sink: dict[tuple[str, str], int] = {
        (sink, outcome): 0 for sink in sinks for outcome in DELIVERY_OUTCOMES
    }
    for key, count in counters.deliveries.items():
        by_sink[(key.sink, key.outcome)] = by_sink.get((key.sink, key.outcome), 0) + count
    for labels, count in sorted(by_sink.items()):
        generic.add_metric(labels, count)
    yield generic

    errors = CounterMetricFamily(
        "oauth_token_errors",
        "OAuth token endpoint refusals, by OAuth error code.",
        labels=("error",),
    )
    known = OAUTH_TOKEN_ERRORS | {"other"} | set(counters.oauth_token_errors)
    for error in sorted(known):
        errors.add_metric((error,), counters.oauth_token_errors.get(error, 0))
    yield errors


def _live_families(counters: Counters) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "live_connections",
        "Live feeds (dashboard WebSockets) open on this process.",
        value=counters.live_connections,
    )
    refused = CounterMetricFamily(
        "live_connections_refused",
        "Live feeds refused at a cap (limits.websockets_per_credential or _per_household).",
        labels=("cap",),
    )
    for cap in sorted(LIVE_CAPS | set(counters.live_refusals)):
        refused.add_metric((cap,), counters.live_refusals.get(cap, 0))
    yield refused


class RedisCollector(Collector):
    """The Redis link's health: connected now, reconnects and publish failures so far."""

    def __init__(self, redis: RedisHealth) -> None:
        self._redis = redis

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Three families, read from the link."""
        yield GaugeMetricFamily(
            "redis_connected",
            "1 while Redis answers this process, 0 while it does not (or before it has).",
            value=1 if self._redis.connected else 0,
        )
        yield CounterMetricFamily(
            "redis_reconnects",
            "Times Redis answered again after failing.",
            value=self._redis.reconnects,
        )
        yield CounterMetricFamily(
            "redis_publish_failures",
            "Events that did not reach the other replicas (Redis down, slow or refusing).",
            value=self._redis.publish_failures,
        )


# the endpoint ---------------------------------------------------------------------------------
METRICS_KEY: Final = web.AppKey("staterelay.app.metrics", AppMetrics)
BEARER_CHALLENGE: Final = 'Bearer realm="metrics"'


class MetricsUnauthorized(StateRelayError):
    """A scraper without the metrics token (the code scrapers have always read)."""

    status = 401
    code = "unauthorized"
    title = "Unauthorized"


def setup_metrics(
    app: web.Application,
    core: Core,
    settings: MetricsSettings,
    *,
    redis: RedisHealth | None = None,
    sinks: Iterable[str] = (),
    collectors: Sequence[Collector] = (),
) -> None:
    """Serve ``/metrics`` when enabled; without it the path is unknown (404)."""
    if not settings.enabled:
        return
    app[METRICS_KEY] = AppMetrics(core, redis, sinks=sinks, collectors=collectors)
    app.router.add_get(METRICS_PATH, _metrics_view(settings.token))


def _metrics_view(token: str | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    expected = f"Bearer {token}".encode() if token is not None else None

    async def metrics(request: web.Request) -> web.Response:
        """The metrics in Prometheus text format, for an allowed scraper."""
        if expected is None:
            if not loopback_peer(request):
                return problem_response(
                    Forbidden("only clients on this machine may read the metrics")
                )
        else:
            presented = request.headers.get("Authorization", "").strip().encode()
            if not hmac.compare_digest(presented, expected):
                return problem_response(
                    MetricsUnauthorized("the metrics need metrics.token as a bearer token"),
                    headers={"WWW-Authenticate": BEARER_CHALLENGE},
                )
        body = await request.app[METRICS_KEY].exposition()
        return web.Response(
            body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
        )

    return metrics


FORWARDING_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def loopback_peer(request: web.Request) -> bool:
    """True when the connection comes from loopback and did not pass through a proxy.

    Only the socket's peer counts, never what forwarding headers claim. A reverse proxy on
    this machine (Caddy) connects from loopback too, for any client of the internet; the
    forwarding headers it adds mark such a request as not local.
    """
    transport = request.transport
    if transport is None or any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    return is_loopback(transport.get_extra_info("peername"))


def is_loopback(peername: object) -> bool:
    """True for a loopback socket address, or a Unix socket (only local users reach one)."""
    if isinstance(peername, str | bytes):
        return True  # AF_UNIX: the peer is a path (or unnamed), on this machine
    if not isinstance(peername, tuple) or not peername:
        return False
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def route_label(request: web.Request) -> str:
    """The route template a request matched, or ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED
