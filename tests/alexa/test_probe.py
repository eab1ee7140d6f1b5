"""The Alexa set-up page's test event: an AddOrUpdateReport sent at once, Alexa's answer shown."""

from __future__ import annotations

import json

from aiohttp import web

from staterelay.core import Core
from staterelay.core.records import Principal
from staterelay.integrations.alexa import ALEXA_KEY
from tests.alexa.conftest import Amazon, assert_valid


async def test_the_test_event_reaches_the_gateway_and_says_what_it_answered(
    alexa_app: web.Application, core: Core, principal: Principal, granted: str, amazon: Amazon
) -> None:
    tools = alexa_app[ALEXA_KEY]
    assert await tools.send_test(principal) == (
        False,
        "Make a device first: the test event announces your devices to Alexa.",
    )
    await core.devices.create(principal, type="switch", name="Fan", room="Kitchen", source="ui")
    sent_before = len(amazon.events)
    assert await tools.send_test(principal) == (
        True,
        "Alexa accepted the test event (202): 1 device announced.",
    )
    (call,) = amazon.events[sent_before:]
    message = json.loads(call.body)
    assert_valid(message)
    assert message["event"]["header"]["name"] == "AddOrUpdateReport"
    (endpoint,) = message["event"]["payload"]["endpoints"]
    assert endpoint["description"] == "Kitchen · Virtual switch by StateRelay"
    assert call.headers["Authorization"] == f"Bearer {amazon.access_token}"
    status = await core.alexa.status(principal)
    assert status.last_report_status == 202
    amazon.gateway_script.append((403, "SKILL_DISABLED_EXCEPTION", {}))
    assert await tools.send_test(principal) == (False, "Alexa answered 403 to the test event.")


async def test_the_test_event_without_a_link(
    alexa_app: web.Application, principal: Principal
) -> None:
    ok, text = await alexa_app[ALEXA_KEY].send_test(principal)
    assert (ok, text) == (False, "Alexa is not linked to your account yet (step 8).")
