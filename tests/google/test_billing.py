"""Google Home on a hosted instance with billing: a device the household's plan suspended is
offline in Google Home (never gone, so automations survive), and a plan without Google Home
leaves every device offline there."""

from __future__ import annotations

import dataclasses

import pytest

from staterelay.core import Core
from staterelay.core.records.billing import Subscription
from staterelay.settings import PlanLimits, Settings
from tests.billing.conftest import FREE, PRO, billing_settings
from tests.google.conftest import JSON, assert_valid, intent, request, synced
from tests.oauth.conftest import Client

QUERY_RESPONSE = "intents/query/query.response.schema.json"
EXECUTE_RESPONSE = "intents/execute/execute.response.schema.json"
SYNC_RESPONSE = "intents/sync/sync.response.schema.json"
NO_STRIPE = "http://127.0.0.1:9"  # billing on; nothing here calls Stripe


@pytest.fixture
def free_integrations() -> tuple[str, ...]:
    """What the instance's free plan includes (the default: every integration)."""
    return PlanLimits().integrations


@pytest.fixture
def google_settings(google_settings: Settings, free_integrations: tuple[str, ...]) -> Settings:
    """Google Home configured, on an instance with billing."""
    free = dataclasses.replace(
        FREE, limits=dataclasses.replace(FREE.limits, integrations=free_integrations)
    )
    return billing_settings(google_settings, NO_STRIPE, plans=(free, PRO))


def on_off(device_id: str, on: bool) -> JSON:
    """An EXECUTE of OnOff for one device."""
    command = {"command": "action.devices.commands.OnOff", "params": {"on": on}}
    return request(
        "EXECUTE", {"commands": [{"devices": [{"id": device_id}], "execution": [command]}]}
    )


async def test_a_suspended_device_is_offline_in_google_home(
    browser: Client, core: Core, token: str
) -> None:
    """QUERY says offline (with its last states), EXECUTE answers deviceOffline and changes
    nothing; SYNC still lists it; the active device works as before."""
    principal = await core.auth.authenticate(token)
    kept = await core.devices.create(principal, type="switch", name="Kept", source="api")
    paused = await core.devices.create(principal, type="switch", name="Paused", source="api")
    # What a downgrade leaves: the household's row and one device over the new limit.
    subscription = Subscription(
        tenant_id=principal.tenant_id,
        plan_key=FREE.key,
        enforced_plan=FREE.key,
        updated_at=core.clock(),
    )
    await core.store.save_billing(subscription, suspended=[paused.id], now=core.clock())
    core.billing.forget(principal.tenant_id)

    sync = await synced(browser, token)
    assert {d["id"] for d in sync["payload"]["devices"]} == {kept.id, paused.id}

    status, answer = await intent(
        browser, token, request("QUERY", {"devices": [{"id": kept.id}, {"id": paused.id}]})
    )
    assert status == 200
    assert_valid(QUERY_RESPONSE, answer)
    devices = answer["payload"]["devices"]
    assert devices[kept.id] == {"online": True, "status": "SUCCESS", "on": False}
    assert devices[paused.id] == {"online": False, "status": "OFFLINE", "on": False}

    status, answer = await intent(browser, token, on_off(paused.id, True))
    assert status == 200
    assert_valid(EXECUTE_RESPONSE, answer)
    assert answer["payload"]["commands"] == [
        {"ids": [paused.id], "status": "ERROR", "errorCode": "deviceOffline"}
    ]
    assert (await core.devices.get(principal, paused.id)).properties["power"].value == "OFF"
    status, answer = await intent(browser, token, on_off(kept.id, True))
    assert answer["payload"]["commands"][0]["status"] == "SUCCESS"


@pytest.mark.parametrize("free_integrations", [("alexa", "google"), ("alexa", "ifttt", "webhooks")])
async def test_a_plan_without_google_home_leaves_its_devices_offline(
    browser: Client, core: Core, token: str, free_integrations: tuple[str, ...]
) -> None:
    """A free plan that leaves Google Home out: SYNC, QUERY and EXECUTE answer deviceOffline
    (Google keeps the devices) and nothing changes; with it included, they work."""
    included = "google" in free_integrations
    principal = await core.auth.authenticate(token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    core.billing.forget(principal.tenant_id)

    for body in (request("SYNC"), request("QUERY", {"devices": [{"id": lamp.id}]})):
        status, answer = await intent(browser, token, body)
        assert status == 200
        if included:
            assert "errorCode" not in answer["payload"]
        else:
            assert answer["payload"]["errorCode"] == "deviceOffline"
            assert "does not include google" in answer["payload"]["debugString"]
    status, answer = await intent(browser, token, on_off(lamp.id, True))
    power = (await core.devices.get(principal, lamp.id)).properties["power"].value
    assert power == ("ON" if included else "OFF")
