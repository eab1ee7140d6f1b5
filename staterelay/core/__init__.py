"""The domain: the only package adapters import. ``Core`` bundles its services."""

from __future__ import annotations

from dataclasses import dataclass, field

from staterelay.core.accounts import AccountService, PasswordWork
from staterelay.core.activity import ActivityService
from staterelay.core.alexa import AlexaLinkService
from staterelay.core.auth import AuthService
from staterelay.core.billing import BillingService, UsageCounter
from staterelay.core.bus import EventBus, InProcessBus
from staterelay.core.clock import Clock, system_clock
from staterelay.core.counters import Counters
from staterelay.core.crypto import SecretBox
from staterelay.core.delivery import BUILT_IN_POLICIES, DeliveryPlanner, DeliveryPolicy
from staterelay.core.devices import DeviceService
from staterelay.core.facts import InstanceFacts
from staterelay.core.households import HouseholdService
from staterelay.core.ifttt import IftttService
from staterelay.core.integrations import IntegrationRecords
from staterelay.core.mail import Mailer
from staterelay.core.netpolicy import AddressPolicy
from staterelay.core.oauth import OAuthService, RevokedApp
from staterelay.core.oauth_clients import is_alexa_client, is_ifttt_client
from staterelay.core.outbox import OutboxService
from staterelay.core.recovery import RecoveryService
from staterelay.core.sessions import SessionService
from staterelay.core.storage import Store
from staterelay.core.throttle import LoginThrottle
from staterelay.core.users import UserService
from staterelay.core.webhooks import WebhookService
from staterelay.settings import (
    AccountsSettings,
    AlexaSettings,
    BillingSettings,
    IftttSettings,
    OAuthSettings,
)

MIB = 1024 * 1024


@dataclass(frozen=True)
class CoreConfig:
    """The settings core's rules depend on."""

    retention_days: int = 90
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    max_devices: int = 300
    public_url: str = "http://localhost:8080"
    accounts: AccountsSettings = field(default_factory=AccountsSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    ifttt: IftttSettings = field(default_factory=IftttSettings)
    min_free_bytes: int = 64 * MIB
    delivery_policies: tuple[DeliveryPolicy, ...] = BUILT_IN_POLICIES
    alexa: AlexaSettings = field(default_factory=AlexaSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)


@dataclass(frozen=True)
class Readiness:
    """Whether this process should get traffic, and if not, why (for ``/readyz``)."""

    ready: bool
    reason: str | None = None


class Core:
    """Every domain service, wired to one store, bus and clock."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        instance_secret: bytes,
        config: CoreConfig | None = None,
        clock: Clock = system_clock,
        login_throttle: LoginThrottle | None = None,
        mailer: Mailer | None = None,
    ) -> None:
        config = config or CoreConfig()
        self.store = store
        self.bus = bus
        self.clock = clock
        self.config = config
        self.counters = Counters()
        self.users = UserService(store, clock)
        self.sessions = SessionService(
            store, clock, config.accounts, instance_secret=instance_secret
        )
        work = PasswordWork()
        self.accounts = AccountService(
            store, clock, config.accounts, throttle=login_throttle, work=work
        )
        self.recovery = RecoveryService(store, clock, work, mailer=mailer)
        self.facts = InstanceFacts(store, clock)
        self.auth = AuthService(store, clock)
        self.planner = DeliveryPlanner(config.delivery_policies)
        self.usage = UsageCounter(store, clock, enabled=config.billing.enabled)
        self.billing = BillingService(
            store, clock, config.billing, public_url=config.public_url, usage=self.usage
        )
        self.devices = DeviceService(
            store,
            bus,
            clock,
            max_devices=config.max_devices,
            counters=self.counters,
            planner=self.planner,
            billing=self.billing,
        )
        self.activity = ActivityService(store, clock, retention_days=config.retention_days)
        self.webhooks = WebhookService(
            store,
            bus,
            clock,
            SecretBox(instance_secret, "webhook-secrets"),
            config.address_policy,
            planner=self.planner,
            billing=self.billing,
        )
        self.outbox = OutboxService(store, bus, clock, usage=self.usage)
        self.households = HouseholdService(store)
        self.oauth = OAuthService(
            store, clock, SecretBox(instance_secret, "oauth-successors"), config.oauth
        )
        self.auth.add_resolver(self.oauth.resolve)
        self.ifttt = IftttService(
            store,
            clock,
            self.devices,
            self.users,
            self.oauth,
            config.ifttt,
            public_url=config.public_url,
        )
        self.alexa = AlexaLinkService(
            store,
            clock,
            SecretBox(instance_secret, "alexa-tokens"),
            settings=config.alexa,
            facts=self.facts,
        )
        self.integrations = IntegrationRecords(store, clock)
        self.oauth.on_revoke(self._linked_app_revoked)

    async def ready(self) -> bool:
        """True when the store answers and is migrated."""
        return await self.store.ready()

    async def _linked_app_revoked(self, app: RevokedApp) -> None:
        """Unlinking an app stops everything it set up: the Alexa link its token accepted
        (LWA tokens and queued events), IFTTT's trigger identities and notifications."""
        client = app.client
        await self.alexa.linked_app_revoked(
            app.tenant_id,
            app.user_id,
            app.grant_id,
            alexa_client=client is not None and is_alexa_client(client),
        )
        if client is not None and is_ifttt_client(client, self.config.ifttt.client_id):
            await self.ifttt.forget_user(app.tenant_id, app.user_id)

    async def readiness(self) -> Readiness:
        """Ready when the store answers, is migrated and has room to write.

        A disk below ``database.min_free_mb`` makes the process not ready before writes
        start to fail, so a load balancer, Docker or an alert notices while it is still
        cheap to fix.
        """
        if not await self.store.ready():
            return Readiness(False, "the database does not answer, or a migration is pending")
        free = self.store.storage_stats().free_bytes
        wanted = self.config.min_free_bytes
        if free is not None and free < wanted:
            return Readiness(
                False,
                f"{free / MIB:.1f} MiB free under the database, below database.min_free_mb "
                f"({wanted // MIB} MiB)",
            )
        return Readiness(True)


__all__ = ["AddressPolicy", "Core", "CoreConfig", "EventBus", "InProcessBus", "Readiness"]
