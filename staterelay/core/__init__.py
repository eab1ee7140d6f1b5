"""The domain: the only package adapters import. ``Core`` bundles its services."""

from __future__ import annotations

from dataclasses import dataclass, field

from staterelay.core.accounts import AccountService, PasswordWork
from staterelay.core.activity import ActivityService
from staterelay.core.alexa import AlexaLinkService
from staterelay.core.auth import AuthService
from staterelay.core.bus import EventBus, InProcessBus
from staterelay.core.clock import Clock, system_clock
from staterelay.core.counters import Counters
from staterelay.core.crypto import SecretBox
from staterelay.core.devices import DeviceService
from staterelay.core.facts import InstanceFacts
from staterelay.core.ifttt import IftttService
from staterelay.core.mail import Mailer
from staterelay.core.netpolicy import AddressPolicy
from staterelay.core.oauth import OAuthService
from staterelay.core.outbox import OutboxService
from staterelay.core.recovery import RecoveryService
from staterelay.core.sessions import SessionService
from staterelay.core.throttle import LoginThrottle
from staterelay.core.users import UserService
from staterelay.core.webhooks import WebhookService
from staterelay.settings import AccountsSettings, AlexaSettings, IftttSettings, OAuthSettings
from staterelay.store.base import Store


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
    alexa: AlexaSettings = field(default_factory=AlexaSettings)


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
        self.devices = DeviceService(
            store, bus, clock, max_devices=config.max_devices, counters=self.counters
        )
        self.activity = ActivityService(store, clock, retention_days=config.retention_days)
        self.webhooks = WebhookService(
            store,
            bus,
            clock,
            SecretBox(instance_secret, "webhook-secrets"),
            config.address_policy,
        )
        self.outbox = OutboxService(store, bus, clock)
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

    async def ready(self) -> bool:
        """True when the store answers and is migrated."""
        return await self.store.ready()


__all__ = ["AddressPolicy", "Core", "CoreConfig", "EventBus", "InProcessBus"]
