"""The integrations this StateRelay is built with: one line each.

``create_app``, ``staterelay doctor``, the migration runner and the backup checks all read
this registry; adding an integration is its package plus one line here (and any migrations
the package ships). Tests build applications with registries of their own
(``create_app(settings, integrations=(*BUILTIN, Example()))``).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources.abc import Traversable
from typing import Final

from staterelay.app.integration import Integration
from staterelay.core.delivery import DeliveryPolicy
from staterelay.integrations.alexa import Alexa
from staterelay.integrations.billing import Billing
from staterelay.integrations.google import Google
from staterelay.integrations.ifttt import Ifttt
from staterelay.integrations.mqtt import Mqtt
from staterelay.integrations.webhooks import Webhooks
from staterelay.settings import Settings

BUILTIN: Final[tuple[Integration, ...]] = (
    Alexa(),
    Ifttt(),
    Webhooks(),
    Billing(),
    Google(),
    Mqtt(),
)


def migration_folders(integrations: Sequence[Integration] = BUILTIN) -> tuple[Traversable, ...]:
    """The migration folders the integrations ship, in registry order."""
    return tuple(i.migrations for i in integrations if i.migrations is not None)


def delivery_policies(
    settings: Settings, integrations: Sequence[Integration] = BUILTIN
) -> tuple[DeliveryPolicy, ...]:
    """Every integration's delivery policies, in registry order, for core's planner."""
    return tuple(policy for i in integrations for policy in i.delivery_policies(settings))


def check_unique(integrations: Sequence[Integration]) -> None:
    """Raise ``ValueError`` when two integrations share a name."""
    seen: set[str] = set()
    for integration in integrations:
        if integration.name in seen:
            raise ValueError(f"two integrations are named {integration.name!r}")
        seen.add(integration.name)
