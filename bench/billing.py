"""What hosted billing costs a change on PostgreSQL: round trips per PUT, GET and delivered PUT,
with ``billing.enabled`` off and on (same counting proxy as ``bench/postgres.py``).

With billing on, the household's plan and suspended devices are read once and remembered for
a few seconds, and usage is counted in memory and written every 5 seconds: a PUT should stay
at one round trip, with the occasional reload and flush spread over many changes.

    python bench/billing.py    # needs PostgreSQL on 127.0.0.1:5432 (trust), no wrk
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import yaml
from postgres import count_round_trips, scratch_database, staterelay  # bench/ is not a package

# Every plan limit out of the way: this measures the cost of billing, not its refusals.
ROOMY = {"devices": 100, "webhooks": 10, "api_per_minute": 0, "retention_days": 30}


def billing_config(data_dir: Path) -> None:
    """A config.yaml with billing on (Stripe is never called by a PUT or a GET)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "billing": {
            "enabled": True,
            "stripe_secret_key": "sk_test_bench",
            "stripe_webhook_secret": "whsec_bench",
            "plans": [{"key": "free", "name": "Free", "lookup_key": None, "limits": ROOMY}],
        }
    }
    (data_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def main() -> None:
    """Count round trips with billing off, then on, each on a fresh database."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    quiet = {
        **os.environ,
        "STATERELAY_LOG_LEVEL": "warning",
        "STATERELAY_LIMITS_API_KEY_PER_MINUTE": "0",
        "STATERELAY_LIMITS_IP_PER_MINUTE": "0",
    }
    print("round trips to PostgreSQL per operation (background traffic taken out)")
    print(f"{'billing':<8} {'PUT':>6} {'GET':>6} {'PUT+delivery':>13}")
    for enabled in (False, True):
        with tempfile.TemporaryDirectory() as tmp, scratch_database(args.admin_url) as urls:
            owner_url, app_url = urls
            env = {**quiet, "STATERELAY_DATABASE_URL": app_url}
            data_dir = Path(tmp) / "data"
            if enabled:
                billing_config(data_dir)
            staterelay(env, data_dir, "db", "migrate", "--url", owner_url)
            staterelay(env, data_dir, "user", "create", "--email", "bench@example.com")
            trips = count_round_trips(env, data_dir, app_url)
            label = "on" if enabled else "off"
            print(f"{label:<8} {trips.put:>6.2f} {trips.get:>6.2f} {trips.put_delivered:>13.2f}")


if __name__ == "__main__":
    main()
