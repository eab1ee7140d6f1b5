"""The guided set-up pages' remaining ticks, each driven by the real event it stands for
(issue 14): the Alexa guide's "enable" and "routine" steps, the IFTTT service route's five
steps and the Webhooks route's "maker-webhook", and the Webhooks guide's "add" and "test".
Every tick is read "no" right before its event and "yes" right after it."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.cli import cli
from staterelay.settings import Settings
from tests.alexa.conftest import (  # noqa: F401 - the amazon fixture
    Amazon,
    Clock,
    accept_grant,
    alexa_settings_for,
    amazon,
    directive,
    send,
)
from tests.dispatch.conftest import Receiver, receiver, wait_until  # noqa: F401 - a fixture
from tests.ifttt.conftest import (  # noqa: F401 - the realtime fixture
    SERVICE_KEY,
    V1,
    Realtime,
    ifttt_settings,
    realtime,
)
from tests.oauth.conftest import (
    ALEXA_ID,
    ALEXA_SECRET,
    ALEXA_URI,
    EMAIL,
    PASSWORD,
    Client,
    authorize_path,
    consent,
    redirect_params,
    sign_in,
)
from tests.processes import free_port
from tests.ui.homes import Browse, Home, sign_in_home
from tests.ui.test_guides import done
from tests.web.support import FakeClock, build_app

ALEXA = "/dashboard/integrations/alexa"
IFTTT = "/dashboard/integrations/ifttt"
WEBHOOKS = "/dashboard/integrations/webhooks"
SERVICE_STEPS = ("service-key", "service-api", "service-auth", "service-connect", "service-applet")
IFTTT_SERVICE_ID = "staterelay"
IFTTT_REDIRECT = f"https://ifttt.com/channels/{IFTTT_SERVICE_ID}/authorize"


def ticks(page: str, keys: tuple[str, ...]) -> dict[str, str]:
    """``done()`` of each of ``keys``."""
    return {key: done(page, key) for key in keys}


def enable_detail(page: str) -> tuple[str, str]:
    """What the Alexa "enable" step says of each half: (account linked, AcceptGrant)."""
    section = page.split('id="step-enable"', 1)[1].split('id="step-switch"', 1)[0]
    match = re.search(r"Account linked: (\w+) · AcceptGrant received: (\w+)", section)
    assert match is not None, section
    return match.group(1), match.group(2)


# Alexa ----------------------------------------------------------------------------------------
async def test_alexa_enable_and_routine_tick_on_linking_acceptgrant_and_a_changereport(
    settings: Settings,
    amazon: Amazon,  # noqa: F811 - the fixture imported above
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    """ "enable" needs both the account linked (OAuth code flow as Alexa runs it) and
    Alexa's AcceptGrant: linked alone is still "no". "routine" waits for the first
    ChangeReport the (recording) event gateway accepted."""
    port = free_port()
    app = create_app(alexa_settings_for(settings, port, amazon), clock=Clock())
    browser: Client = await aiohttp_client(await aiohttp_server(app, port=port))
    core = app[CORE_KEY]
    await core.users.create(email=EMAIL, password=PASSWORD, is_admin=True)
    await sign_in(browser, next_path=ALEXA)

    async def guide() -> str:
        response = await browser.get(ALEXA, allow_redirects=False)
        assert response.status == 200, response.status
        return await response.text()

    page = await guide()
    assert ticks(page, ("enable", "routine")) == {"enable": "no", "routine": "no"}

    token = await link_as_alexa(browser)
    bearer = {"Authorization": f"Bearer {token}"}
    page = await guide()
    assert done(page, "enable") == "no"  # linked, but no AcceptGrant yet
    assert enable_detail(page) == ("yes", "no")
    # A switch made before Alexa's AcceptGrant: nothing is announced to Alexa for it.
    made = await browser.post(
        "/api/v1/devices", json={"type": "switch", "name": "Movie mode"}, headers=bearer
    )
    assert made.status == 201, await made.text()
    switch = (await made.json())["id"]

    status, answer = await send(browser, accept_grant(token))
    assert status == 200
    assert answer["event"]["header"]["name"] == "AcceptGrant.Response", answer
    page = await guide()
    assert done(page, "enable") == "yes"
    assert enable_detail(page) == ("yes", "yes")
    assert done(page, "routine") == "no"
    status, answer = await send(browser, directive("Alexa.Discovery", "Discover", token))
    assert status == 200
    assert [e["endpointId"] for e in answer["event"]["payload"]["endpoints"]] == [switch]
    assert amazon.events == []
    assert done(await guide(), "routine") == "no"

    # The switch flipped: a ChangeReport; once the gateway accepted it, "routine" ticks.
    turned = await browser.put(
        f"/api/v1/devices/{switch}/state", json={"power": "ON"}, headers=bearer
    )
    assert turned.status == 200, await turned.text()
    (call,) = await amazon.wait_events(1)
    assert call.json()["event"]["header"]["name"] == "ChangeReport"

    async def routine_ticked() -> bool:
        return done(await guide(), "routine") == "yes"

    await wait_until(routine_ticked, timeout=10)
    assert [c.status for c in amazon.events] == [202]


async def link_as_alexa(browser: Client) -> str:
    """Account linking as Alexa's skill does it (signed in): consent, code for tokens."""
    location = await consent(browser, authorize_path(scope="devices"))
    code = redirect_params(location)["code"]
    basic = base64.b64encode(f"{ALEXA_ID}:{ALEXA_SECRET}".encode()).decode()
    exchanged = await browser.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": ALEXA_URI},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert exchanged.status == 200, await exchanged.text()
    token: str = (await exchanged.json())["access_token"]
    return token


async def test_alexa_routine_does_not_tick_on_an_addorupdatereport(
    settings: Settings,
    amazon: Amazon,  # noqa: F811 - the fixture imported above
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    """Step 9 after step 8, as the guide orders them: the new switch is announced to Alexa
    (AddOrUpdateReport, accepted), which is no ChangeReport: step 10 stays unticked."""
    port = free_port()
    app = create_app(alexa_settings_for(settings, port, amazon), clock=Clock())
    browser: Client = await aiohttp_client(await aiohttp_server(app, port=port))
    await app[CORE_KEY].users.create(email=EMAIL, password=PASSWORD, is_admin=True)
    await sign_in(browser, next_path=ALEXA)
    token = await link_as_alexa(browser)
    status, _ = await send(browser, accept_grant(token))
    assert status == 200
    made = await browser.post(
        "/api/v1/devices",
        json={"type": "switch", "name": "Movie mode"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert made.status == 201, await made.text()
    (call,) = await amazon.wait_events(1)
    assert call.json()["event"]["header"]["name"] == "AddOrUpdateReport"
    await wait_until(lambda: call.status == 202)
    page = await (await browser.get(ALEXA, allow_redirects=False)).text()
    assert done(page, "routine") == "no"


# IFTTT ----------------------------------------------------------------------------------------
def _create_ifttt_client(data_dir: str) -> str:
    """``staterelay client create --preset ifttt`` as the guide says; its output."""
    result = CliRunner().invoke(
        cli,
        [
            "client",
            "create",
            "--preset",
            "ifttt",
            "--service-id",
            IFTTT_SERVICE_ID,
            "--allow-insecure-url",
            "--data-dir",
            data_dir,
        ],
        env={"STATERELAY_CONFIG": None},
    )
    assert result.exit_code == 0, result.output
    return result.output


async def test_the_ifttt_service_key_step_follows_the_config(
    settings: Settings,
    realtime: Realtime,  # noqa: F811 - the fixture imported above
    browse: Browse,
    clock: FakeClock,
) -> None:
    """Without ifttt.service_key nothing of the service route is ticked; with it, step 1 is."""
    bare = await sign_in_home(browse, build_app(settings, clock), "sam@example.com")
    page = await bare.browser.page(IFTTT)
    assert ticks(page, SERVICE_STEPS) == dict.fromkeys(SERVICE_STEPS, "no")
    configured = build_app(ifttt_settings(settings, realtime.url), clock)
    home = await sign_in_home(browse, configured, "kim@example.com")
    page = await home.browser.page(IFTTT)
    assert done(page, "service-key") == "yes"
    assert ticks(page, SERVICE_STEPS[1:]) == dict.fromkeys(SERVICE_STEPS[1:], "no")


async def test_the_ifttt_service_steps_tick_as_ifttt_reaches_staterelay(
    settings: Settings,
    realtime: Realtime,  # noqa: F811 - the fixture imported above
    browse: Browse,
    clock: FakeClock,
) -> None:
    """IFTTT's status check (a wrong key does not count), the client registered by
    `staterelay client create --preset ifttt`, the user connecting through the OAuth code
    flow, and IFTTT's first trigger poll each tick their step, in that order."""
    configured = ifttt_settings(settings, realtime.url)
    app = build_app(configured, clock)
    home = await sign_in_home(browse, app, "sam@example.com")
    client = home.browser.client

    async def steps() -> dict[str, str]:
        return ticks(await home.browser.page(IFTTT), SERVICE_STEPS)

    assert await steps() == {**dict.fromkeys(SERVICE_STEPS, "no"), "service-key": "yes"}

    wrong = await client.get(f"{V1}/status", headers={"IFTTT-Service-Key": "svc_wrong"})
    assert wrong.status == 401
    assert (await steps())["service-api"] == "no"
    checked = await client.get(f"{V1}/status", headers={"IFTTT-Service-Key": SERVICE_KEY})
    assert checked.status == 200
    assert (await steps())["service-api"] == "yes"
    assert (await steps())["service-auth"] == "no"

    output = await asyncio.to_thread(_create_ifttt_client, str(configured.data_dir))
    client_id = re.search(r"Client ID:\s+(\S+)", output)
    client_secret = re.search(r"Client secret:\s+(\S+)", output)
    assert client_id is not None, output
    assert client_secret is not None, output
    assert (await steps())["service-auth"] == "yes"
    assert (await steps())["service-connect"] == "no"

    location = await consent(
        client,
        authorize_path(client_id.group(1), IFTTT_REDIRECT, scope="ifttt"),
    )
    code = redirect_params(location)["code"]
    exchanged = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": IFTTT_REDIRECT,
            "client_id": client_id.group(1),
            "client_secret": client_secret.group(1),
        },
    )
    assert exchanged.status == 200, await exchanged.text()
    token = (await exchanged.json())["access_token"]
    assert (await steps())["service-connect"] == "yes"
    assert (await steps())["service-applet"] == "no"

    lamp = await home.add_device("switch", "Lamp")
    polled = await client.post(
        f"{V1}/triggers/power_changed",
        json={"trigger_identity": "applet-identity-1", "triggerFields": {"device": lamp}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert polled.status == 200, await polled.text()
    assert await steps() == dict.fromkeys(SERVICE_STEPS, "yes")


async def test_the_ifttt_webhooks_step_ticks_when_the_webhook_is_added(
    make_app: Callable[..., web.Application],
    browse: Browse,
    receiver: Receiver,  # noqa: F811 - the fixture imported above
) -> None:
    """ "maker-webhook" ticks for an IFTTT Webhooks webhook, not for a plain webhook."""
    home = await sign_in_home(browse, make_app(), "sam@example.com")
    assert done(await home.browser.page(IFTTT), "maker-webhook") == "no"
    await add_webhook(home, receiver.url("/plain"))
    assert done(await home.browser.page(IFTTT), "maker-webhook") == "no"
    made = await home.post(
        WEBHOOKS,
        {
            "format": "ifttt_webhooks",
            "url": receiver.url("/hook"),
            "ifttt_event": "lamp_changed",
            "ifttt_key": "abcdefgh12345678",
            "event:state.changed": "on",
        },
    )
    assert made.status == 200, await made.text()
    assert done(await home.browser.page(IFTTT), "maker-webhook") == "yes"


# Webhooks -------------------------------------------------------------------------------------
async def add_webhook(home: Home, url: str) -> str:
    """Add a standard webhook for state changes through the dashboard form; its id."""
    made = await home.post(
        WEBHOOKS,
        {"format": "standard", "url": url, "description": "Recorder", "event:state.changed": "on"},
    )
    text = await made.text()
    assert made.status == 200, text
    ids = re.findall(r"/dashboard/integrations/webhooks/(whk_[A-Za-z0-9_-]+)", text)
    assert ids, text[:2000]
    return str(ids[0])


async def test_the_webhooks_steps_tick_on_add_and_on_a_delivered_test(
    make_app: Callable[..., web.Application],
    browse: Browse,
    receiver: Receiver,  # noqa: F811 - the fixture imported above
    clock: FakeClock,
) -> None:
    """ "add" ticks once a webhook exists (an IFTTT Webhooks one does not count); "test"
    only once a delivery succeeded: a refused test event leaves it "no", a delivered one
    ticks it, and the recording receiver got the webhook.test event."""
    home = await sign_in_home(browse, make_app(), "sam@example.com")

    async def steps() -> dict[str, str]:
        return ticks(await home.browser.page(WEBHOOKS), ("add", "test"))

    assert await steps() == {"add": "no", "test": "no"}
    ifttt = await home.post(
        WEBHOOKS,
        {
            "format": "ifttt_webhooks",
            "url": receiver.url("/elsewhere"),
            "ifttt_event": "lamp_changed",
            "ifttt_key": "abcdefgh12345678",
            "event:state.changed": "on",
        },
    )
    assert ifttt.status == 200, await ifttt.text()
    assert await steps() == {"add": "no", "test": "no"}

    receiver.script = [500]
    hook_id = await add_webhook(home, receiver.url("/hook"))
    assert await steps() == {"add": "yes", "test": "no"}

    tested = await home.post(f"{WEBHOOKS}/{hook_id}/test")
    assert tested.status == 303
    assert tested.headers["Location"].endswith("?done=tested")
    # The outbox stamps rows with the wall clock, which runs ahead of the app's clock.
    clock.advance(60)

    async def failed() -> bool:
        return "answered 500" in await home.browser.page(WEBHOOKS)

    await wait_until(failed, timeout=15)
    assert await steps() == {"add": "yes", "test": "no"}

    receiver.default = 200
    await home.post(f"{WEBHOOKS}/{hook_id}/test")
    clock.advance(60)

    async def delivered() -> bool:
        return (await steps())["test"] == "yes"

    await wait_until(delivered, timeout=15)
    bodies = [r.body for r in receiver.at("/hook")]
    assert any(b"webhook.test" in body for body in bodies), bodies
    assert receiver.at("/elsewhere") == []  # the IFTTT webhook got no test event
