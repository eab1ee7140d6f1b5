"""test/setup: which client's token, where the test user lives, and what a rerun does."""

from __future__ import annotations

import dataclasses

from aiohttp.test_utils import TestClient, TestServer

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.core.oauth_clients import ifttt_preset
from staterelay.settings import Settings
from tests.ifttt.conftest import SERVICE_KEY, V1, Client, Linked, ifttt_client_id

HEADERS = {"IFTTT-Service-Key": SERVICE_KEY}


async def register(core: Core, client_id: str) -> None:
    """Register another ``ifttt`` preset client."""
    preset = ifttt_preset("other")
    await core.oauth.create_client(
        name=preset.name,
        redirect_uris=preset.redirect_uris,
        token_endpoint_auth_method=preset.token_endpoint_auth_method,
        scopes=preset.scopes,
        client_id=client_id,
    )


async def test_without_an_ifttt_client_it_says_how_to_make_one(client: Client) -> None:
    """503 naming the command, and no test user is created."""
    response = await client.post(f"{V1}/test/setup", headers=HEADERS)
    assert response.status == 503
    message = (await response.json())["errors"][0]["message"]
    assert "staterelay client create --preset ifttt" in message


async def test_the_test_user_has_a_household_of_its_own(
    client: Client, core: Core, alice: Linked
) -> None:
    """The test devices never appear in the real household; a rerun revokes the old token
    and reuses the devices."""
    response = await client.post(f"{V1}/test/setup", headers=HEADERS)
    first = (await response.json())["data"]
    household = await core.users.household()
    assert household.id == alice.principal.tenant_id
    user = await core.users.by_email("ifttt-endpoint-tests@staterelay.invalid")
    assert user.tenant_id != household.id
    assert (await core.devices.list(alice.principal)).items == ()
    token = first["accessToken"]
    principal = await core.auth.authenticate(token)
    assert principal.client_id == await ifttt_client_id(core)
    assert len((await core.devices.list(principal)).items) == 4
    second = (await (await client.post(f"{V1}/test/setup", headers=HEADERS)).json())["data"]
    assert second["accessToken"] != token
    revoked = await client.get(f"{V1}/user/info", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status == 401
    assert second["samples"] == first["samples"]


async def test_several_ifttt_clients_need_ifttt_client_id(
    settings: Settings, client: Client, core: Core
) -> None:
    """With two ``ifttt`` clients the setup asks for ``ifttt.client_id``; set, it is used."""
    await ifttt_client_id(core)
    await register(core, "ifttt-second")
    response = await client.post(f"{V1}/test/setup", headers=HEADERS)
    assert response.status == 503
    assert "ifttt.client_id" in (await response.json())["errors"][0]["message"]
    chosen = dataclasses.replace(
        settings, ifttt=dataclasses.replace(settings.ifttt, client_id="ifttt-second")
    )
    await client.close()
    app = create_app(chosen)
    async with TestClient(TestServer(app)) as second:
        answer = await second.post(f"{V1}/test/setup", headers=HEADERS)
        assert answer.status == 200, await answer.text()
        token = (await answer.json())["data"]["accessToken"]
        principal = await app[CORE_KEY].auth.authenticate(token)
        assert principal.client_id == "ifttt-second"


async def test_an_account_with_the_test_address_is_never_adopted(
    client: Client, core: Core, alice: Linked
) -> None:
    """An account that carries the test account's address (registered before such
    addresses were refused) is left alone: test/setup makes its own account, recognizes it
    by the marker it set, and never gives the other account's household test devices or a
    token."""
    from staterelay.core.ids import new_id
    from staterelay.core.records import Tenant, User

    tenant = await core.store.create_tenant(Tenant(id=new_id("ten"), name="x", created_at=0.0))
    squatter = await core.store.create_user(
        User(
            id=new_id("usr"),
            tenant_id=tenant.id,
            email="ifttt-endpoint-tests@staterelay.invalid",
            is_admin=True,
            created_at=0.0,
        )
    )
    await ifttt_client_id(core)
    answers = []
    for _ in range(2):
        response = await client.post(f"{V1}/test/setup", headers=HEADERS)
        assert response.status == 200, await response.text()
        answers.append((await response.json())["data"])
    principals = [await core.auth.authenticate(a["accessToken"]) for a in answers[1:]]
    [principal] = principals
    assert principal.user_id != squatter.id
    assert principal.tenant_id != tenant.id
    assert len((await core.devices.list(principal)).items) == 4
    squatters = await core.store.list_devices(tenant.id, after_seq=None, limit=10)
    assert list(squatters) == []
    assert answers[0]["samples"] == answers[1]["samples"]  # the same account both times
    test_user = await core.users.get(principal.tenant_id, principal.user_id)
    assert test_user.email.endswith("@staterelay.invalid")
    assert test_user.email != squatter.email
