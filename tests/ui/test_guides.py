"""The guided set-up pages and webhook health: each step's tick appears once StateRelay has
seen it happen; webhooks read green, amber or red from their deliveries, with the error."""

from __future__ import annotations

import re

from aiohttp import web

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.browser.household import webhook_health
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.core.records import Webhook, WebhookDelivery
from staterelay.integrations.webhooks.dashboard import webhooks_summary
from tests.dispatch.conftest import Receiver, receiver, wait_until  # noqa: F401 - a fixture
from tests.ui.homes import Browse, Home, MakeApp, sign_in_home
from tests.web.support import FakeClock

GUIDE = "/dashboard/integrations/alexa"


def done(page: str, key: str) -> str:
    """The data-done of one step: yes, no, or empty when nothing is checked."""
    match = re.search(rf'id="step-{key}" data-step="{key}" data-done="(\w*)"', page)
    assert match is not None, key
    return match.group(1)


async def test_the_alexa_steps_tick_as_the_server_sees_them(
    make_app: MakeApp, browse: Browse
) -> None:
    """Vendor id registers the client (once), the messaging client is kept without a
    restart, a directive carrying the relay secret ticks the relay, a routine switch ticks
    its step; forms keep what was typed and say what is wrong next to the field."""
    app = make_app()
    home = await sign_in_home(browse, app, "sam@example.com")
    page = await home.browser.page(GUIDE)
    assert page.count('class="card guide-step"') == 10
    assert [done(page, key) for key in ("https", "skill", "events", "lambda", "switch")] == [
        "no"
    ] * 5
    assert "The package cannot be built yet" in page  # http://localhost:8080

    made = await home.post(f"{GUIDE}/client", {"vendor_id": "M2ABCDEF"})
    text = await made.text()
    assert done(text, "skill") == "yes"
    assert "shown only now" in text
    twice = await home.post(f"{GUIDE}/client", {"vendor_id": "M2ABCDEF"})
    assert twice.status == 422
    text = await twice.text()
    assert "is registered for this vendor id already" in text
    assert 'value="M2ABCDEF"' in text
    assert len([c for c in await home.core.oauth.list_clients()]) == 1

    bad = await home.post(f"{GUIDE}/messaging", {"client_id": "nope", "client_secret": "s" * 40})
    assert bad.status == 422
    text = await bad.text()
    assert "The Alexa Client Id starts with amzn1.application-oa2-client." in text
    assert 'value="nope"' in text
    assert 'value="' + "s" * 40 + '"' in text  # the secret typed is kept too
    good = await home.post(
        f"{GUIDE}/messaging",
        {"client_id": "amzn1.application-oa2-client.0123456789ab", "client_secret": "s" * 40},
    )
    assert good.status == 303
    messaging = await home.core.alexa.messaging()
    assert messaging is not None
    assert messaging.client_id == "amzn1.application-oa2-client.0123456789ab"
    assert done(await home.browser.page(GUIDE), "events") == "yes"

    client = home.browser.client
    directive = {"directive": {"header": {"namespace": "Alexa", "name": "ReportState"}}}
    refused = await client.post("/alexa/smart_home", json=directive)
    assert refused.status == 401
    assert done(await home.browser.page(GUIDE), "lambda") == "no"
    secret = relay_secret(load_or_create_secret(app[SETTINGS_KEY].secret_key_path))
    relayed = await client.post(
        "/alexa/smart_home", json=directive, headers={"X-StateRelay-Relay-Secret": secret}
    )
    assert relayed.status in (200, 400)
    page = await home.browser.page(GUIDE)
    assert done(page, "lambda") == "yes"
    assert secret in page  # the admin sees the relay secret, as `alexa setup` prints it

    await home.add_device("switch", "Movie mode", routine_trigger="on")
    assert done(await home.browser.page(GUIDE), "switch") == "yes"
    tested = await home.post(f"{GUIDE}/test")
    assert "Alexa is not linked to your account yet (step 8)." in await tested.text()


async def test_a_member_sees_the_steps_without_the_secrets(
    make_app: MakeApp, browse: Browse
) -> None:
    app = make_app()
    admin = await sign_in_home(browse, app, "sam@example.com")
    member = await sign_in_home(browse, app, "kim@example.com", is_admin=False)
    page = await member.browser.page(GUIDE)
    secret = relay_secret(load_or_create_secret(app[SETTINGS_KEY].secret_key_path))
    assert secret not in page
    assert "Register the skill's client" not in page
    assert (await member.post(f"{GUIDE}/client", {"vendor_id": "M2ABCDEF"})).status == 403
    assert secret in await admin.browser.page(GUIDE)


def hook(enabled: bool = True) -> Webhook:
    return Webhook(
        seq=1,
        id="whk_1",
        tenant_id="t",
        url="https://h.example/x",
        description="",
        device_ids=None,
        event_types=None,
        enabled=enabled,
        secret_ciphertext="",
        created_at=1.0,
        updated_at=1.0,
    )


def attempt(n: int, status: int | None, error: str | None = None) -> WebhookDelivery:
    return WebhookDelivery(n, "t", "whk_1", f"evt_{n}", "state.changed", n, status, error, 5.0, n)


def test_health_reads_the_last_deliveries() -> None:
    """Newest first: a success is green, a failure amber while retried, red when the last
    three failed or one was given up; the last error is shown."""
    cases = [
        ([], "off", "Nothing sent yet"),
        ([attempt(1, 204)], "linked", "Delivered"),
        ([attempt(2, 500, "boom"), attempt(1, 204)], "attention", "Retrying"),
        ([attempt(3, None, "timed out"), attempt(2, 500), attempt(1, 503)], "error", "Failing"),
        ([attempt(20, 500)], "error", "Gave up"),
        ([attempt(3, 204), attempt(2, 500), attempt(1, 500)], "linked", "Delivered"),
    ]
    for recent, state, label in cases:
        health = webhook_health(hook(), recent, max_attempts=20)
        assert (health["state"], health["label"]) == (state, label), recent
    assert webhook_health(hook(), [attempt(2, 500, "boom")], 20)["detail"] == "answered 500: boom"
    assert webhook_health(hook(enabled=False), [attempt(1, 204)], 20)["state"] == "off"
    rows = [
        {
            "name": "Home Assistant",
            "enabled": True,
            "health": {"state": "linked", "label": "Delivered", "detail": ""},
        },
        {
            "name": "Node-RED",
            "enabled": True,
            "health": {"state": "error", "label": "Failing", "detail": "answered 500"},
        },
    ]
    assert webhooks_summary(rows) == {
        "state": "error",
        "label": "1 failing",
        "count": 2,
        "detail": "Node-RED: answered 500",
    }
    assert webhooks_summary(rows[:1])["label"] == "1 delivering"


async def delivered_pages(home: Home) -> tuple[str, str, str]:
    """The dashboard, integrations and IFTTT guide pages."""
    return (
        await home.browser.page("/dashboard"),
        await home.browser.page("/dashboard/integrations"),
        await home.browser.page("/dashboard/integrations/ifttt"),
    )


async def test_an_ifttt_webhooks_webhook_shows_as_ifttt_with_its_health(
    make_app: MakeApp,
    browse: Browse,
    receiver: Receiver,  # noqa: F811
    clock: FakeClock,
) -> None:
    """Not "Not set up": the IFTTT card and chip follow the Webhooks route; its test event's
    answer turns it amber, then green; the device filter is listed by name."""
    app: web.Application = make_app()
    home = await sign_in_home(browse, app, "sam@example.com")
    lamp = await home.add_device("switch", "Lamp")
    receiver.script = [500]
    made = await home.post(
        "/dashboard/integrations/webhooks",
        {
            "format": "ifttt_webhooks",
            "url": receiver.url("/hook"),
            "ifttt_event": "lamp_changed",
            "ifttt_key": "abcdefgh12345678",
            "event:state.changed": "on",
            f"device:{lamp}": "on",
        },
    )
    assert made.status == 200, await made.text()
    (hook_id,) = re.findall(
        r"/dashboard/integrations/webhooks/(whk_[A-Za-z0-9_-]+)", await made.text()
    )[:1]
    dashboard, integrations, guide = await delivered_pages(home)
    assert "Not set up" not in integrations.split('id="ifttt"')[1].split("</section>")[0]
    assert "Webhooks · nothing sent yet" in dashboard
    assert "every device" not in integrations.split(f'data-webhook="{hook_id}"')[1][:600]
    assert "Lamp" in integrations.split(f'data-webhook="{hook_id}"')[1][:600]

    tested = await home.post(
        f"/dashboard/integrations/webhooks/{hook_id}/test",
        {"next": "/dashboard/integrations/ifttt"},
    )
    assert tested.headers["Location"] == "/dashboard/integrations/ifttt?done=tested"

    async def says(text: str) -> bool:
        return text in await home.browser.page("/dashboard/integrations/ifttt")

    # The outbox stamps rows with the wall clock, which runs ahead of the app's clock.
    clock.advance(60)
    await wait_until(lambda: says("Last error: answered 500"), timeout=15)
    assert done(await home.browser.page("/dashboard/integrations/ifttt"), "maker-test") == "no"
    chips = (await home.browser.page("/dashboard")).split('href="/dashboard/integrations#webhooks"')
    assert "IFTTT lamp_changed: answered 500" in chips[1].split("</a>")[0]
    receiver.default = 200
    await home.post(f"/dashboard/integrations/webhooks/{hook_id}/test")
    clock.advance(60)

    async def delivered() -> bool:
        return done(await home.browser.page("/dashboard/integrations/ifttt"), "maker-test") == "yes"

    await wait_until(delivered, timeout=15)
    dashboard, integrations, guide = await delivered_pages(home)
    assert done(guide, "maker-test") == "yes"
    chip = dashboard.split('href="/dashboard/integrations#ifttt"')[1].split("</a>")[0]
    assert "Webhooks · delivered" in chip, chip
    assert 'data-state="linked"' in integrations.split(f'data-webhook="{hook_id}"')[1][:300]
