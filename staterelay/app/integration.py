"""The plug-in interface: what an integration (Alexa, IFTTT, webhooks, ...) brings to StateRelay.

An integration is one package exposing one object that satisfies ``Integration``; adding it
to ``staterelay.app.registry.BUILTIN`` (or to the ``integrations`` of ``create_app``) is all
it takes. What it *declares* is read without an application: its settings section, its URL
surfaces, its migrations, its delivery policies and its ``doctor`` checks. What it *builds*
for one application (``build``) are the parts that need core and the shared HTTP client:
routes, outbox sinks, periodic tasks, dashboard cards, metrics collectors and anything it
runs while the application does.

Integrations import this module, ``staterelay.app.appkeys``, ``staterelay.app.problems`` and
``staterelay.app.http`` (with its SSRF guard, ``staterelay.app.ssrf``) from the assembly, and
nothing else of it (an import-linter contract checks).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any, Final, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from staterelay.app.appkeys import CORE_KEY, SETTINGS_KEY
from staterelay.app.http import OutgoingHttp
from staterelay.app.problems import problem
from staterelay.core import Core
from staterelay.core.counters import DELIVERY_OUTCOMES, Counters
from staterelay.core.delivery import DeliveryPolicy
from staterelay.core.errors import StateRelayError
from staterelay.core.records import Principal
from staterelay.core.records.oauth import LinkedApp, OAuthClient
from staterelay.core.sinks import Sink
from staterelay.ops.checks import Check
from staterelay.settings import Settings

ErrorRenderer = Callable[[web.Request, StateRelayError, Mapping[str, str]], web.Response]
"""Answers an error the request boundary raised itself (a refusal at a rate limit, say) in a
surface's wire format; the mapping holds headers the answer must carry (``Retry-After``)."""


class RateLimit(enum.Enum):
    """Which of the ``limits`` settings count a surface's requests."""

    NONE = "none"
    """Not counted: callers that call for every user from a few addresses (Alexa), static
    files, the operations endpoints."""
    ADDRESS = "address"
    """Per client address (``limits.ip_per_minute``)."""
    CREDENTIAL = "credential"
    """Per credential in ``Authorization`` (``limits.api_key_per_minute``) and per address."""
    IFTTT_TOKEN = "ifttt_token"
    """Per IFTTT access token only (``limits.ifttt_token_per_minute``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Surface:
    """One part of the URL space: who serves it, which layers run, who answers its errors.

    ``path`` is a prefix (``/api/``) or, with ``exact``, a whole path (``/healthz``); the
    longest matching prefix wins, and an exact path over any prefix. ``roles`` are the host
    roles (``server.hosts.<role>``) that serve it when hosts are split by role; none means
    every host (the operations endpoints). ``html`` runs the HTML layer (error pages,
    security headers, the origin check) and ``session`` the session cookie within it.
    """

    path: str
    roles: tuple[str, ...]
    html: bool = False
    session: bool = False
    limit: RateLimit = RateLimit.ADDRESS
    errors: ErrorRenderer = problem
    exact: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsSection:
    """An integration's section of the settings: the YAML key, and how to read it.

    Once any key of the section differs from its default, ``required`` keys must be set
    (and, with ``public_https``, the public URL be https); ``doctor`` checks both.
    """

    name: str
    title: str
    read: Callable[[Settings], object]
    required: tuple[str, ...] = ()
    public_https: bool = True


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    """Work repeated every ``interval`` seconds while the application runs.

    ``run`` starts at once (after one interval with ``wait_first``); a failure is logged and
    the task runs again at its next turn. See ``staterelay.app.periodic``.
    """

    name: str
    interval: float
    run: Callable[[], Awaitable[object]]
    wait_first: bool = False


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What the dashboard has read for a signed-in user before it asks the cards.

    Read once per page and shared by every card: the OAuth clients and the user's grants
    (most integrations link through OAuth), and the user's webhooks as the dashboard lists
    them (each row with its ``health``).
    """

    request: web.Request
    principal: Principal
    clients: Sequence[OAuthClient]
    grants: Sequence[LinkedApp]
    webhooks: Sequence[Mapping[str, Any]]

    @property
    def core(self) -> Core:
        """The application's core."""
        return self.request.config_dict[CORE_KEY]

    @property
    def settings(self) -> Settings:
        """The application's settings."""
        return self.request.config_dict[SETTINGS_KEY]


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """An integration's card on the integrations page and its chip on the dashboard.

    ``view`` returns the values ``template`` renders (as ``view``); its ``state`` (linked,
    attention, error, off or unavailable), ``label`` and optional ``detail`` make the chip.
    The generic template shows ``label``, ``text`` and ``facts`` (label and value pairs) and
    links to ``setup_path``, the integration's guided set-up page. ``wide`` cards sit below
    the others, across the page. ``notices`` are what the page says after the card's
    actions, by the ``done`` value they redirect with.
    """

    key: str
    title: str
    name: str
    icon: str
    view: Callable[[CardFacts], Awaitable[Mapping[str, Any]]]
    template: str = "cards/generic.html"
    setup_path: str | None = None
    wide: bool = False
    notices: Mapping[str, str] = field(default_factory=dict)


CARDS_KEY: Final = web.AppKey("staterelay.app.cards", tuple[Card, ...])
"""The cards of every integration of the application, in registry order."""


@dataclass(frozen=True, slots=True)
class IntegrationContext:
    """What every integration is built from: core, the settings and the outgoing HTTP."""

    core: Core
    settings: Settings
    http: OutgoingHttp
    instance_secret: bytes = field(repr=False)
    """The instance's secret key, to derive secrets of the integration's own from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Parts:
    """What one integration adds to one application.

    ``routes`` go on the root application, each of ``subapps`` is mounted at its prefix.
    ``sinks`` deliver the outbox rows of their ``name``. ``running`` is entered once the
    database is open and left before it closes (and before the outgoing HTTP is closed);
    ``keys`` are set on the root application for the integration's own handlers and tests.
    """

    routes: Sequence[web.AbstractRouteDef] = ()
    subapps: Mapping[str, web.Application] = field(default_factory=dict)
    sinks: Sequence[Sink] = ()
    periodic: Sequence[PeriodicTask] = ()
    cards: Sequence[Card] = ()
    collectors: Sequence[Collector] = ()
    running: Callable[[], AbstractAsyncContextManager[None]] | None = None
    keys: Mapping[web.AppKey[Any], Any] = field(default_factory=dict)


class Integration(Protocol):
    """One integration: what it declares, and what it builds for an application.

    Subclass it to inherit the defaults (no settings, surfaces, migrations, policies or
    checks of its own).
    """

    name: str
    """Its name: ``alexa``, ``ifttt``, ``webhooks``; unique in a registry."""

    section: SettingsSection | None = None
    """Its settings section, if it has one."""

    surfaces: Sequence[Surface] = ()
    """The URL space it serves (its routes must lie inside it)."""

    migrations: Traversable | None = None
    """A folder with ``sqlite/`` and ``postgres/`` subfolders of ``<version>_<name>.sql``
    files, applied with the bundled migrations in version order; versions must not repeat
    any other migration's (the bundled ones use 1-999)."""

    def delivery_policies(self, settings: Settings) -> Sequence[DeliveryPolicy]:
        """Its sinks' delivery policies (``staterelay.core.delivery``): which changes they
        must hear of, the ordering key of each row, what may merge. Core's planner asks every
        registered integration's policies about every change; none when it is switched off
        in ``settings``."""
        return ()

    def doctor_checks(self, settings: Settings) -> Sequence[Check]:
        """``staterelay doctor``'s checks beyond its settings section's, in print order."""
        return ()

    def build(self, context: IntegrationContext) -> Parts:
        """Its parts for one application; nothing may connect before the app starts."""
        ...


class SinkOutcomes(Collector):
    """A counter family of one sink's delivery attempts by outcome, every outcome from 0.

    Most integrations with a sink want one (``webhook_deliveries``,
    ``ifttt_realtime_notifications``); it reads core's counters at scrape time.
    """

    def __init__(self, counters: Counters, *, name: str, sink: str, documentation: str) -> None:
        self._counters = counters
        self._name = name
        self._sink = sink
        self._documentation = documentation

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the family is made afresh at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The family, one sample per outcome."""
        family = CounterMetricFamily(self._name, self._documentation, labels=("outcome",))
        outcomes = self._counters.deliveries_of(self._sink)
        for outcome in sorted(DELIVERY_OUTCOMES | set(outcomes)):
            family.add_metric((outcome,), outcomes.get(outcome, 0))
        yield family
