"""``staterelay billing``: check the plans' Stripe prices, look at a household, repair it.

``plans --check`` confirms each paid plan's lookup key names an active recurring price;
``status --email E`` prints the household's plan, subscription and usage as StateRelay has
them; ``sync --email E`` re-reads the customer's subscriptions from Stripe and applies them
(what a webhook would have done). The command line's own helpers (loading settings, opening
core) are handed in by ``staterelay.cli``, which registers the group with one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
import stripe

from staterelay.core import Core
from staterelay.core.billing import month_of
from staterelay.core.clock import iso
from staterelay.integrations.billing.stripe_api import PriceCheck, StripeApi, StripeNotConfigured
from staterelay.settings import Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CliTools:
    """What ``staterelay.cli`` lends its command groups."""

    load: Callable[[Path | None, Path | None], Settings]
    run: Callable[[Settings, Callable[[Core], Awaitable[Any]]], Any]
    settings_options: Callable[[F], F]
    error: type[click.ClickException]


def _api(settings: Settings, session: aiohttp.ClientSession) -> StripeApi:
    return StripeApi(
        secret_key=settings.billing.stripe_secret_key,
        api_base=settings.billing.stripe_api_base,
        session=lambda: session,
    )


def billing_commands(tools: CliTools) -> click.Group:
    """The ``billing`` command group."""

    @click.group()
    def billing() -> None:
        """Hosted billing with Stripe: plans, a household's subscription, repairs."""

    def enabled(config_file: Path | None, data_dir: Path | None) -> Settings:
        settings = tools.load(config_file, data_dir)
        if not settings.billing.enabled:
            raise tools.error("billing is off (billing.enabled is false)")
        return settings

    @billing.command("plans")
    @click.option("--check", is_flag=True, help="Ask Stripe whether every lookup key has a price.")
    @tools.settings_options
    def plans(check: bool, config_file: Path | None, data_dir: Path | None) -> None:
        """List the plans; with --check, confirm each paid plan's recurring price in Stripe."""
        settings = enabled(config_file, data_dir)
        for plan in settings.billing.plans:
            limits = plan.limits
            click.echo(
                f"{plan.key}\t{plan.name}\t{plan.lookup_key or '(free)'}\t"
                f"devices={limits.devices} webhooks={limits.webhooks} "
                f"api_per_minute={limits.api_per_minute} retention_days={limits.retention_days} "
                f"integrations={','.join(limits.integrations)}"
            )
        if not check:
            return

        async def checks() -> list[PriceCheck]:
            async with aiohttp.ClientSession() as session:
                api = _api(settings, session)
                return [
                    await api.check_price(plan.key, plan.lookup_key)
                    for plan in settings.billing.plans
                    if plan.lookup_key is not None
                ]

        try:
            results = asyncio.run(checks())
        except StripeNotConfigured as exc:
            raise tools.error(str(exc)) from None
        except stripe.StripeError as exc:
            raise tools.error(f"Stripe answered: {exc.user_message or exc}") from None
        wrong = 0
        for result in results:
            if result.problem is None:
                click.echo(f"OK    {result.plan_key}: {result.lookup_key} is {result.price_id}")
            else:
                wrong += 1
                click.echo(f"FAIL  {result.plan_key}: {result.lookup_key}: {result.problem}")
        if wrong:
            raise tools.error(
                f"{wrong} plan(s) without an active recurring price; create the price in Stripe"
                " with that lookup key (or fix billing.plans)"
            )

    @billing.command("status")
    @click.option("--email", required=True, help="An account of the household.")
    @tools.settings_options
    def status(email: str, config_file: Path | None, data_dir: Path | None) -> None:
        """The household's plan, subscription, suspended devices and this month's usage."""
        settings = enabled(config_file, data_dir)

        async def read(core: Core) -> list[str]:
            user = await core.store.find_user_by_email(email)
            if user is None:
                raise tools.error(f"no account with the email {email}")
            household = await core.billing.household(user.tenant_id, fresh=True)
            month = month_of(core.clock())
            usage = await core.store.get_usage(user.tenant_id, month)
            subscription = household.subscription
            return [
                f"household\t{user.tenant_id}",
                f"plan\t{household.plan.key} (subscribed: {household.subscribed.key})",
                f"status\t{household.status}",
                f"customer\t{household.customer_id or '-'}",
                f"subscription\t{(subscription.subscription_id if subscription else None) or '-'}",
                f"period_end\t{iso(subscription.current_period_end) if subscription else '-'}",
                f"cancel_at_period_end\t{bool(subscription and subscription.cancel_at_period_end)}",
                f"grace_until\t{iso(household.grace_until) or '-'}",
                f"suspended_devices\t{len(household.suspended)}",
                f"usage {month}\tstate_changes={usage.state_changes} deliveries={usage.deliveries}",
            ]

        for line in tools.run(settings, read):
            click.echo(line)

    @billing.command("sync")
    @click.option("--email", required=True, help="An account of the household.")
    @tools.settings_options
    def sync(email: str, config_file: Path | None, data_dir: Path | None) -> None:
        """Re-read the household's subscriptions from Stripe and apply them."""
        settings = enabled(config_file, data_dir)

        async def repair(core: Core) -> str:
            user = await core.store.find_user_by_email(email)
            if user is None:
                raise tools.error(f"no account with the email {email}")
            household = await core.billing.household(user.tenant_id, fresh=True)
            customer = household.customer_id
            if customer is None:
                raise tools.error("the household has no Stripe customer yet (it never upgraded)")
            try:
                async with aiohttp.ClientSession() as session:
                    facts = await _api(settings, session).subscription_of(customer)
            except StripeNotConfigured as exc:
                raise tools.error(str(exc)) from None
            except stripe.StripeError as exc:
                raise tools.error(f"Stripe answered: {exc.user_message or exc}") from None
            await core.billing.apply(user.tenant_id, facts)
            after = await core.billing.household(user.tenant_id, fresh=True)
            return f"{after.plan.key}\t{after.status}\t{len(after.suspended)} suspended"

        click.echo(tools.run(settings, repair))

    return billing
