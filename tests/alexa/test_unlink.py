"""Unlinking Alexa in StateRelay stops the flow at once, whichever way it is done.

Settings > Linked apps, ``DELETE /api/v1/grants/{id}`` and the integration's Unlink button
each end the Alexa link: the user's Login with Amazon tokens and their queued events are
dropped, nothing is sent to the gateway afterwards (events queued while it was failing
included), the status says not linked, and Alexa's OAuth token stops working.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from staterelay.core import Core
from staterelay.core.records import Principal
from tests.alexa.conftest import Amazon, directive, send
from tests.oauth.conftest import ALEXA_ID, Client
from tests.web.support import csrf_in


async def personal_key(core: Core, principal: Principal) -> dict[str, str]:
    """An Authorization header with a personal API key of the linked user."""
    user = await core.users.get(principal.tenant_id, principal.user_id)
    _, secret = await core.auth.create_api_key(user, name="unlink test", scope="write")
    return {"Authorization": f"Bearer {secret}"}


async def unlink(how: str, browser: Client, headers: dict[str, str]) -> None:
    """Revoke Alexa's linked app the way ``how`` names."""
    grants = await (await browser.get("/api/v1/grants", headers=headers)).json()
    [grant_id] = [g["id"] for g in grants["items"] if g["client_id"] == ALEXA_ID]
    if how == "api":
        response = await browser.delete(f"/api/v1/grants/{grant_id}", headers=headers)
        assert response.status == 204
        return
    page = await (await browser.get("/dashboard/settings")).text()
    path = (
        f"/dashboard/settings/apps/{grant_id}/revoke"
        if how == "settings"
        else "/dashboard/integrations/alexa/unlink"
    )
    response = await browser.post(path, data={"csrf_token": csrf_in(page)}, allow_redirects=False)
    assert response.status == 303, await response.text()


@pytest.mark.parametrize("how", ["api", "settings", "integration"])
async def test_revoking_alexas_linked_app_stops_every_event(
    browser: Client,
    core: Core,
    principal: Principal,
    granted: str,
    amazon: Amazon,
    how: str,
) -> None:
    headers = await personal_key(core, principal)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    # The gateway is down: the next changes wait in the outbox for their retry.
    amazon.gateway_default = 503
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await core.devices.set_state(principal, lamp.id, {"power": "OFF"}, source="api")
    await amazon.wait_events(2)
    assert (await core.outbox.stats()).pending >= 1

    await unlink(how, browser, headers)

    assert (await core.outbox.stats()).pending == 0  # queued events dropped at once
    grant = await core.store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
    assert grant is not None
    assert grant.status == "unlinked"
    assert (grant.access_token_ciphertext, grant.refresh_token_ciphertext) == (None, None)
    status = await (await browser.get("/api/v1/integrations/alexa", headers=headers)).json()
    assert status["linked"] is False
    page = await (await browser.get("/dashboard/integrations")).text()
    assert "Not linked" in page
    # The gateway is back; nothing more reaches it, whatever changes.
    amazon.gateway_default = 202
    sent = len(amazon.events)
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await core.devices.press(
        principal,
        (await core.devices.create(principal, type="button", name="Bell", source="api")).id,
        source="api",
    )
    await core.devices.delete(principal, lamp.id, source="api")
    await asyncio.sleep(0.3)
    assert len(amazon.events) == sent
    assert (await core.outbox.stats()).pending == 0
    # Alexa's own token is revoked too: its directives are refused.
    _, answer = await send(
        browser, directive("Alexa.PowerController", "TurnOn", granted, "dev_anything")
    )
    assert answer["event"]["payload"]["type"] == "INVALID_AUTHORIZATION_CREDENTIAL"


async def test_revoking_another_app_leaves_alexa_linked(
    browser: Client, core: Core, principal: Principal, granted: str, amazon: Amazon
) -> None:
    """Only the linked app that made the Alexa link ends it."""
    from tests.ifttt.conftest import ifttt_client_id

    headers = await personal_key(core, principal)
    client_id = await ifttt_client_id(core)
    other: Any = await core.oauth.get_client(client_id)
    assert other is not None
    from staterelay.core.oauth import NewCode

    code = core.oauth.new_code()
    record = await core.oauth.save_code(
        code,
        NewCode(
            client_id=other.id,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            redirect_uri=other.redirect_uris[0],
            redirect_uri_given=True,
            scopes=other.scopes,
        ),
    )
    assert await core.oauth.exchange_code(record, core.oauth.issue_tokens(other.scopes))
    grants = await (await browser.get("/api/v1/grants", headers=headers)).json()
    [ifttt_grant] = [g["id"] for g in grants["items"] if g["client_id"] == other.id]
    response = await browser.delete(f"/api/v1/grants/{ifttt_grant}", headers=headers)
    assert response.status == 204
    assert (await core.alexa.status(principal)).linked
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await amazon.wait_events(1)
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await amazon.wait_events(2)
