"""Build ``Core`` from settings: the one place the server and the command line share."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources.abc import Traversable

from staterelay.core import MIB, AddressPolicy, Core, CoreConfig, InProcessBus
from staterelay.core.bus import EventBus
from staterelay.core.clock import Clock, system_clock
from staterelay.core.delivery import BUILT_IN_POLICIES, DeliveryPolicy
from staterelay.core.throttle import LoginThrottle
from staterelay.mailer import SmtpMailer
from staterelay.settings import Settings
from staterelay.store import open_store


def core_config(
    settings: Settings, delivery_policies: Sequence[DeliveryPolicy] = BUILT_IN_POLICIES
) -> CoreConfig:
    """The part of the settings core's rules depend on, and the integrations' policies."""
    return CoreConfig(
        delivery_policies=tuple(delivery_policies),
        retention_days=settings.activity.retention_days,
        address_policy=AddressPolicy.from_settings(
            settings.webhooks.allow_private_networks, settings.webhooks.allowed_networks
        ),
        public_url=settings.public_url,
        accounts=settings.accounts,
        oauth=settings.oauth,
        ifttt=settings.ifttt,
        min_free_bytes=settings.database.min_free_mb * MIB,
        alexa=settings.alexa,
        billing=settings.billing,
    )


def build_core(
    settings: Settings,
    *,
    instance_secret: bytes,
    bus: EventBus | None = None,
    clock: Clock = system_clock,
    login_throttle: LoginThrottle | None = None,
    migrations: Sequence[Traversable] = (),
    delivery_policies: Sequence[DeliveryPolicy] = BUILT_IN_POLICIES,
) -> Core:
    """A Core on the configured database; the store is not opened yet.

    ``migrations`` are the integrations' migration folders (``app.registry``), applied with
    the bundled ones when the store opens; ``delivery_policies`` their sinks' policies.
    Raises ``ValueError`` for a database URL this version cannot open.
    """
    store = open_store(
        settings.database_url,
        durability=settings.database.durability,
        migrate_url=settings.database.migrate_url,
        migrations=migrations,
    )
    return Core(
        store,
        bus or InProcessBus(),
        instance_secret=instance_secret,
        clock=clock,
        config=core_config(settings, delivery_policies),
        login_throttle=login_throttle,
        mailer=SmtpMailer(settings.email) if settings.email.enabled else None,
    )
