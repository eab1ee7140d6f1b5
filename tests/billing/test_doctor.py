"""``staterelay doctor``'s billing checks: Stripe-looking keys and a plan to upgrade to."""

from __future__ import annotations

import dataclasses

from staterelay.integrations.billing import Billing
from staterelay.settings import Settings
from tests.billing.conftest import FREE


def test_billing_checks_say_what_is_wrong(hosted: Settings) -> None:
    good = {check.name: check.status for check in Billing().doctor_checks(hosted)}
    assert good == {"billing plans": "OK"}

    wrong = dataclasses.replace(
        hosted.billing,
        stripe_secret_key="pk_live_public",
        stripe_webhook_secret="secret",
        plans=(FREE,),
    )
    found = {
        check.name: (check.status, check.message)
        for check in Billing().doctor_checks(dataclasses.replace(hosted, billing=wrong))
    }

    assert found["billing key"][0] == "FAIL"
    assert "sk_ or rk_" in found["billing key"][1]
    assert found["billing webhook"][0] == "FAIL"
    assert found["billing plans"] == ("WARN", "billing.plans has no paid plan to upgrade to")


def test_billing_off_has_no_checks(settings: Settings) -> None:
    assert Billing().doctor_checks(settings) == ()
