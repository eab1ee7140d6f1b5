"""``staterelay billing plans --check | status --email | sync --email`` against the fake Stripe.

The commands run their own event loop, so the fake Stripe serves from a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from staterelay.cli import cli
from staterelay.store import open_store
from tests.billing.fake_stripe import (
    PRO_LOOKUP,
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    start_fake_stripe,
)


@pytest.fixture
def threaded_stripe() -> Iterator[FakeStripe]:
    """The fake Stripe on a loop in a thread (the CLI's asyncio.run needs the main one)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        fake, server = loop.run_until_complete(start_fake_stripe())
        holder.update(fake=fake, server=server)
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    fake = holder["fake"]
    assert isinstance(fake, FakeStripe)
    fake.add_price(PRO_LOOKUP)
    fake.add_price("staterelay_once", recurring=False)
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def configure(data_dir: Path, stripe_url: str, *, enabled: bool = True) -> None:
    """A config.yaml with billing on: free, Pro, a plan whose price is missing, a one-time one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    free = {"key": "free", "name": "Free", "lookup_key": None}
    plans = [
        free,
        {"key": "pro", "name": "Pro", "lookup_key": PRO_LOOKUP, "limits": {"devices": 10}},
        {"key": "team", "name": "Team", "lookup_key": "staterelay_team_missing"},
        {"key": "once", "name": "Once", "lookup_key": "staterelay_once"},
    ]
    config = {
        "billing": {
            "enabled": enabled,
            "stripe_api_base": stripe_url,
            "stripe_secret_key": SECRET_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "plans": plans,
        }
    }
    (data_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def invoke(data_dir: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)], input=stdin)


def test_plans_check_names_each_plan_without_a_recurring_price(
    tmp_path: Path, threaded_stripe: FakeStripe
) -> None:
    configure(tmp_path, threaded_stripe.url)

    result = invoke(tmp_path, "billing", "plans", "--check")

    assert result.exit_code == 1, result.output
    price = threaded_stripe.prices[PRO_LOOKUP]["id"]
    assert f"OK    pro: {PRO_LOOKUP} is {price}" in result.stdout
    assert "FAIL  team: staterelay_team_missing: no active price has this lookup key" in (
        result.stdout
    )
    assert "FAIL  once: staterelay_once: the price is not recurring" in result.stdout
    assert "2 plan(s) without an active recurring price" in result.stderr
    calls = threaded_stripe.made("GET", "/v1/prices")
    assert {call.params["lookup_keys[0]"] for call in calls} == {
        PRO_LOOKUP,
        "staterelay_team_missing",
        "staterelay_once",
    }
    assert all(call.params["active"] == "true" for call in calls)


def test_status_and_sync_repair_a_household_from_stripe(
    tmp_path: Path, threaded_stripe: FakeStripe
) -> None:
    configure(tmp_path, threaded_stripe.url)
    made = invoke(tmp_path, "user", "create", "--email", "owner@example.com", "--admin")
    assert made.exit_code == 0, made.output
    never = invoke(tmp_path, "billing", "sync", "--email", "owner@example.com")
    assert never.exit_code == 1
    assert "no Stripe customer yet" in never.stderr

    async def give_customer() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'staterelay.db'}")
        await store.open()
        try:
            user = await store.find_user_by_email("owner@example.com")
            assert user is not None
            await store.save_customer(user.tenant_id, "cus_cli", 0.0)
        finally:
            await store.close()

    asyncio.run(give_customer())
    threaded_stripe.subscribe("cus_cli", PRO_LOOKUP)
    before = invoke(tmp_path, "billing", "status", "--email", "owner@example.com")
    assert before.exit_code == 0, before.output
    assert "plan\tfree (subscribed: free)" in before.stdout

    synced = invoke(tmp_path, "billing", "sync", "--email", "owner@example.com")

    assert synced.exit_code == 0, synced.output
    assert synced.stdout.strip() == "pro\tactive\t0 suspended"
    after = invoke(tmp_path, "billing", "status", "--email", "owner@example.com")
    assert "plan\tpro (subscribed: pro)" in after.stdout
    assert "customer\tcus_cli" in after.stdout
    assert "status\tactive" in after.stdout
    unknown = invoke(tmp_path, "billing", "status", "--email", "nobody@example.com")
    assert unknown.exit_code == 1
    assert "no account with the email nobody@example.com" in unknown.stderr


def test_billing_commands_say_when_billing_is_off(
    tmp_path: Path, threaded_stripe: FakeStripe
) -> None:
    configure(tmp_path, threaded_stripe.url, enabled=False)
    result = invoke(tmp_path, "billing", "plans", "--check")
    assert result.exit_code == 1
    assert "billing is off" in result.stderr
    assert not threaded_stripe.requests
