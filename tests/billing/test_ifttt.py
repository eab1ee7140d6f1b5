"""IFTTT under a plan: a suspended device's action is an IFTTT error with SKIP (not retried),
and a plan without IFTTT refuses IFTTT's calls in IFTTT's error shape."""

from __future__ import annotations

import dataclasses
from typing import Any

from staterelay.app.appkeys import CORE_KEY
from staterelay.core.billing import StripeSubscription
from staterelay.settings import Settings
from tests.billing.conftest import FREE, PRO
from tests.billing.fake_stripe import PRO_LOOKUP
from tests.ifttt.conftest import V1, ifttt_settings, link
from tests.web.support import FakeClock, build_app

PAID = StripeSubscription(
    customer_id="cus_ifttt",
    subscription_id="sub_ifttt",
    lookup_key=PRO_LOOKUP,
    status="active",
    current_period_end=None,
    cancel_at_period_end=False,
)


async def test_a_suspended_devices_action_is_skipped_in_iftt_shape(
    hosted: Settings, aiohttp_client: Any, clock: FakeClock
) -> None:
    app = build_app(ifttt_settings(hosted, "http://127.0.0.1:9/realtime"), clock)
    client = await aiohttp_client(app)
    core = app[CORE_KEY]
    alice = await link(core, "ifttt@example.com", new_tenant=True)
    tenant = alice.principal.tenant_id
    await core.billing.apply(tenant, PAID)
    devices = [
        await core.devices.create(alice.principal, type="switch", name=f"S{n}", source="api")
        for n in range(4)
    ]
    await core.billing.apply(tenant, dataclasses.replace(PAID, status="canceled"))

    response = await client.post(
        f"{V1}/actions/set_power",
        json={"actionFields": {"device": devices[3].id, "power": "on"}},
        headers=alice.headers,
    )

    assert response.status == 400
    (error,) = (await response.json())["errors"]
    assert error["status"] == "SKIP"
    assert "suspended" in error["message"]
    assert (await core.devices.get(alice.principal, devices[3].id)).properties[
        "power"
    ].value == "OFF"


async def test_a_plan_without_ifttt_refuses_its_calls(
    hosted: Settings, aiohttp_client: Any, clock: FakeClock
) -> None:
    no_ifttt = dataclasses.replace(
        FREE, limits=dataclasses.replace(FREE.limits, integrations=("alexa", "webhooks"))
    )
    plans = dataclasses.replace(hosted.billing, plans=(no_ifttt, PRO))
    settings = dataclasses.replace(hosted, billing=plans)
    app = build_app(ifttt_settings(settings, "http://127.0.0.1:9/realtime"), clock)
    client = await aiohttp_client(app)
    core = app[CORE_KEY]
    alice = await link(core, "noifttt@example.com", new_tenant=True)
    lamp = await core.devices.create(alice.principal, type="switch", name="Lamp", source="api")

    response = await client.post(
        f"{V1}/actions/set_power",
        json={"actionFields": {"device": lamp.id, "power": "on"}},
        headers=alice.headers,
    )

    assert response.status == 400
    (error,) = (await response.json())["errors"]
    assert "does not include ifttt" in error["message"]
    assert (await core.devices.get(alice.principal, lamp.id)).properties["power"].value == "OFF"
