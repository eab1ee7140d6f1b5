"""Unlinking ends everything at once: Google's DISCONNECT and a revoke in StateRelay (the
API's DELETE /api/v1/grants/{id}, the dashboard) revoke the tokens, drop queued Home Graph
rows and stop sending."""

from __future__ import annotations

import asyncio
from typing import Any

from staterelay.core import Core
from tests.conftest import make_account
from tests.google.conftest import (
    REPORT,
    SYNC,
    FakeGoogle,
    eventually,
    intent,
    request,
    settle,
    synced,
)
from tests.oauth.conftest import Client


async def test_disconnect_ends_the_link_revokes_and_drops_what_was_queued(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Reports wait behind a held Home Graph; DISCONNECT answers {}, the token stops working,
    the queued rows are dropped and nothing is sent afterwards."""
    await synced(browser, token)
    principal = await core.auth.authenticate(token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    google.script[REPORT] = [(0, None, {})]  # Home Graph hangs: rows queue up
    google.hang_seconds = 3.0
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await google.wait(REPORT, 1)
    for value in ("OFF", "ON", "OFF"):
        await core.devices.set_state(principal, lamp.id, {"power": value}, source="api")
    status, answer = await intent(browser, token, request("DISCONNECT"))
    assert status == 200
    assert answer == {}
    status, _ = await intent(browser, token, request("SYNC"))
    assert status == 401
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id) is None
    gone = await core.integrations.get(principal.tenant_id, "google", "gone", principal.user_id)
    assert gone is not None
    assert "DISCONNECT" in gone.data["reason"]
    assert list(await core.oauth.list_user_grants(principal.tenant_id, principal.user_id)) == []
    await asyncio.sleep(3.5)
    await settle(core)
    assert len(google.of(REPORT)) == 1
    # Later changes are not planned for Google at all.
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert len(google.of(REPORT)) == 1


async def test_revoking_in_staterelay_ends_the_link(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Settings > Linked apps (DELETE /api/v1/grants/{id}): the link ends at once."""
    await synced(browser, token)
    principal = await core.auth.authenticate(token)
    # The user's own API key revokes the grant Google holds.
    me = await core.users.get(principal.tenant_id, principal.user_id)
    _, key = await core.auth.create_api_key(me, name="k", scope="write")
    answer = await browser.delete(
        f"/api/v1/grants/{principal.credential_id}", headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status == 204, await answer.text()

    async def ended() -> bool:
        link = await core.integrations.link_of(principal.tenant_id, "google", principal.user_id)
        return link is None

    await eventually(ended)
    gone = await core.integrations.get(principal.tenant_id, "google", "gone", principal.user_id)
    assert gone is not None
    assert "revoked in StateRelay" in gone.data["reason"]
    owner = await core.auth.authenticate(key)
    lamp = await core.devices.create(owner, type="switch", name="Lamp", source="api")
    await core.devices.set_state(owner, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert google.calls == []
    status, _ = await intent(browser, token, request("SYNC"))
    assert status == 401


async def test_revoking_another_app_leaves_google_linked(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Only the Google Home client's grants end the Google link."""
    from tests.conftest import Account, link_oauth_client

    await synced(browser, token)
    principal = await core.auth.authenticate(token)
    account = Account(principal.user_id, principal.tenant_id, "", "alice@example.com")
    other_grant, _ = await link_oauth_client(core, account)
    await core.oauth.revoke_user_grant(principal.tenant_id, principal.user_id, other_grant)
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id)


async def test_disconnect_of_one_household_leaves_another_linked(
    browser: Client, core: Core, token: str, google: FakeGoogle, user: Any
) -> None:
    """A DISCONNECT is the caller's only."""
    await synced(browser, token)
    principal = await core.auth.authenticate(token)
    stranger = await make_account(core, "mallory@example.net", new_tenant=True)
    await core.integrations.link(stranger.tenant_id, "google", stranger.user_id, {"linked_at": 1.0})
    _, answer = await intent(browser, token, request("DISCONNECT"))
    assert answer == {}
    assert await core.integrations.link_of(stranger.tenant_id, "google", stranger.user_id)
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id) is None


async def test_unlinking_on_the_set_up_page(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """The guide's Unlink button (with its CSRF token) revokes Google's grant and ends the
    link; without the token nothing happens."""
    from tests.oauth.conftest import form_value

    await synced(browser, token)
    principal = await core.auth.authenticate(token)
    page = await browser.get("/dashboard/integrations/google")
    html = await page.text()
    assert "Unlink Google Home" in html
    refused = await browser.post(
        "/dashboard/integrations/google/unlink", data={}, allow_redirects=False
    )
    assert refused.status == 403
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id)
    answer = await browser.post(
        "/dashboard/integrations/google/unlink",
        data={"csrf_token": form_value(html, "csrf_token")},
        allow_redirects=False,
    )
    assert answer.status == 303
    assert answer.headers["Location"] == "/dashboard/integrations?done=google-unlinked"
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id) is None
    status, _ = await intent(browser, token, request("SYNC"))
    assert status == 401


async def test_deleting_the_client_ends_the_link_before_the_next_report(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Deleting Google's OAuth client revokes its grants without a listener hearing: the
    sink ends the link before sending anything more."""
    await synced(browser, token)
    principal = await core.auth.authenticate(token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await google.wait(SYNC, 1)
    await settle(core)
    assert principal.client_id is not None
    await core.oauth.delete_client(principal.client_id)
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await settle(core)
    assert google.of(REPORT) == []
    assert await core.integrations.link_of(principal.tenant_id, "google", principal.user_id) is None
