"""The dashboard without a browser: pages, device forms, errors next to fields, tenancy."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from typing import Any

import pytest
from aiohttp import web

from staterelay.app.appkeys import SETTINGS_KEY
from staterelay.app.factory import create_app
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.core.errors import NotFound
from staterelay.core.webhooks import EVENT_TYPES
from staterelay.settings import Settings
from tests.ui.homes import Browse, Home, MakeApp, sign_in_home
from tests.web.support import add_user
from tests.web.test_cookies import set_cookies, sign_in_by_hand

MAIN_PAGES = (
    "/dashboard",
    "/dashboard/devices",
    "/dashboard/devices/new",
    "/dashboard/activity",
    "/dashboard/integrations",
    "/dashboard/settings",
)
# Everything any dashboard form could carry, so a refusal is never about a missing field.
FULL_FORM = {
    "name": "Renamed",
    "description": "",
    "power": "ON",
    "enabled": "on",
    "routine_trigger": "on",
    "next": "/dashboard",
}


@pytest.fixture
async def home(make_app: MakeApp, browse: Browse) -> Home:
    """The household's admin, signed in."""
    return await sign_in_home(browse, make_app(), "sam@example.com")


async def test_every_dashboard_page_needs_a_session(make_app: MakeApp, browse: Browse) -> None:
    """Signed out, each page sends you to sign in and back; the snapshot answers 401 JSON."""
    browser = await browse(make_app())
    for path in MAIN_PAGES:
        response = await browser.get(path)
        assert response.status == 303, path
        assert response.headers["Location"] == f"/login?next={path}"
    snapshot = await browser.get("/dashboard/state.json")
    assert snapshot.status == 401
    assert await snapshot.json() == {"error": "signed out"}


async def test_the_landing_page_sends_people_who_are_signed_in_on(home: Home) -> None:
    """``/`` is for visitors; ``/account`` is the settings page's old address."""
    landing = await home.browser.get("/")
    assert (landing.status, landing.headers["Location"]) == (303, "/dashboard")
    old = await home.browser.get("/account?done=password")
    assert (old.status, old.headers["Location"]) == (301, "/dashboard/settings?done=password")
    for path in MAIN_PAGES:
        await home.browser.page(path)


async def test_a_device_is_created_renamed_and_deleted_with_forms(home: Home) -> None:
    """Create (switch with the Routine mirror), rename and switch the mirror off, delete."""
    device_id = await home.add_device("switch", "Movie mode", routine_trigger="on")
    device = await home.core.devices.get(home.principal, device_id)
    assert (device.name, dict(device.options)) == ("Movie mode", {"routine_trigger": True})
    page = await home.browser.page(f"/dashboard/devices/{device_id}?done=created")
    assert "The device was created." in page
    assert f"curl -X PUT http://localhost:8080/api/v1/devices/{device_id}/state" in page
    assert "-d &#39;{&#34;power&#34;: &#34;ON&#34;}&#39;" in page

    saved = await home.post(
        f"/dashboard/devices/{device_id}/settings", {"name": " Cinema ", "description": "TV"}
    )
    assert saved.headers["Location"] == f"/dashboard/devices/{device_id}?done=saved"
    device = await home.core.devices.get(home.principal, device_id)
    assert (device.name, device.description) == ("Cinema", "TV")
    assert device.options["routine_trigger"] is False

    confirm = await home.browser.page(f"/dashboard/devices/{device_id}/delete")
    assert "Delete “Cinema”?" in confirm
    assert (await home.core.devices.get(home.principal, device_id)).id == device_id
    deleted = await home.post(f"/dashboard/devices/{device_id}/delete")
    assert deleted.headers["Location"] == "/dashboard/devices?done=deleted"
    with pytest.raises(NotFound):
        await home.core.devices.get(home.principal, device_id)
    listing = await home.browser.page("/dashboard/devices?done=deleted")
    assert "The device was deleted." in listing
    assert device_id not in listing
    kinds = [e.kind for e in (await home.core.activity.list(home.principal)).items]
    assert kinds[:3] == ["device.deleted", "device.updated", "device.created"]


async def test_new_switches_start_routines_unless_unticked(home: Home) -> None:
    """The form ticks the Routine mirror for a switch; unticked, it stays off."""
    form = await home.browser.page("/dashboard/devices/new")
    assert re.search(r'name="routine_trigger" value="on" checked', form)
    plain = await home.add_device("switch", "Plain")
    assert (await home.core.devices.get(home.principal, plain)).options == {
        "routine_trigger": False
    }
    sensor = await home.add_device("temperature_sensor", "Sauna", scale="FAHRENHEIT")
    assert (await home.core.devices.get(home.principal, sensor)).options == {"scale": "FAHRENHEIT"}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"type": "switch", "name": "   "}, "name", "Name must be 1 to 128 characters."),
        ({"type": "toaster", "name": "Toast"}, "type", "Type must be one of switch, dimmer"),
        (
            {"type": "temperature_sensor", "name": "T", "scale": "KELVIN"},
            "scale",
            "Scale must be CELSIUS or FAHRENHEIT.",
        ),
    ],
)
async def test_create_errors_sit_next_to_their_fields(
    home: Home, fields: dict[str, str], field: str, message: str
) -> None:
    """A refused form comes back (422) with the message under the field and the input kept."""
    response = await home.post("/dashboard/devices/new", fields)
    text = await response.text()
    assert response.status == 422
    assert re.search(rf'class="field-error" id="{field}-error">{re.escape(message)}', text), text
    assert (await home.core.devices.list(home.principal)).items == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("warm", "Temperature must be a number."),
        ("", "Enter a temperature."),
        ("999", "Temperature must be from -90 to 150 °C."),
        ("nan", "Temperature must be a number."),
    ],
)
async def test_a_refused_reading_is_shown_next_to_the_input(
    home: Home, value: str, message: str
) -> None:
    """Without JavaScript the device page comes back; with it, JSON names the field."""
    device_id = await home.add_device("temperature_sensor", "Greenhouse")
    response = await home.post(f"/dashboard/devices/{device_id}/state", {"temperature": value})
    text = await response.text()
    assert response.status == 422
    error = re.search(rf'id="temperature-{device_id}-error"[^>]*>([^<]*)<', text)
    assert error is not None
    assert error.group(1) == message
    assert 'aria-invalid="true"' in text
    scripted = await home.post(
        f"/dashboard/devices/{device_id}/state",
        {"temperature": value},
        headers={"Accept": "application/json"},
    )
    assert scripted.status == 422
    assert await scripted.json() == {"error": message, "field": "temperature"}
    device = await home.core.devices.get(home.principal, device_id)
    assert device.version == 1


async def test_the_slider_at_zero_switches_the_dimmer_off_keeping_its_level(home: Home) -> None:
    """Dragging a dimmer's slider to 0 turns it off (never "on at 0 %"); the switch turns it
    back on at the level it had."""
    device_id = await home.add_device("dimmer", "Desk")
    back = f"/dashboard/devices/{device_id}"
    for fields in ({"brightness": "60"}, {"brightness": "0"}):
        response = await home.post(
            f"/dashboard/devices/{device_id}/state", {**fields, "next": back}
        )
        assert response.status == 303
    device = await home.core.devices.get(home.principal, device_id)
    assert (device.properties["power"].value, device.properties["brightness"].value) == ("OFF", 60)
    await home.post(f"/dashboard/devices/{device_id}/state", {"power": "ON", "next": back})
    device = await home.core.devices.get(home.principal, device_id)
    assert (device.properties["power"].value, device.properties["brightness"].value) == ("ON", 60)


async def test_every_kind_of_device_is_controlled_without_javascript(home: Home) -> None:
    """Each control is a form POST answered with a 303 back to the page it came from."""
    cases: list[tuple[str, dict[str, str], dict[str, Any]]] = [
        ("switch", {"power": "ON"}, {"power": "ON"}),
        ("dimmer", {"brightness": "35"}, {"brightness": 35, "power": "ON"}),
        ("contact_sensor", {"detection": "DETECTED"}, {"detection": "DETECTED"}),
        ("motion_sensor", {"detection": "DETECTED"}, {"detection": "DETECTED"}),
        (
            "temperature_sensor",
            {"temperature": "21,5"},
            {"temperature": {"value": 21.5, "scale": "CELSIUS"}},
        ),
    ]
    for kind, fields, expected in cases:
        device_id = await home.add_device(kind, kind)
        back = f"/dashboard/devices/{device_id}"
        response = await home.post(
            f"/dashboard/devices/{device_id}/state", {**fields, "next": back}
        )
        assert (response.status, response.headers["Location"]) == (303, back), kind
        device = await home.core.devices.get(home.principal, device_id)
        assert {k: p.value for k, p in device.properties.items()} == expected, kind
    button = await home.add_device("button", "Doorbell")
    pressed = await home.post(
        f"/dashboard/devices/{button}/press", {"next": "https://evil.example/"}
    )
    assert (pressed.status, pressed.headers["Location"]) == (303, "/dashboard")
    device = await home.core.devices.get(home.principal, button)
    assert device.properties["last_pressed_at"].value is not None
    entry = (await home.core.activity.list(home.principal, device_id=button)).items[0]
    assert (entry.kind, entry.source, entry.actor) == ("press", "ui", entry.actor)
    assert entry.actor is not None
    assert entry.actor.startswith("session:ses_")


async def test_the_script_gets_the_device_back_as_json(home: Home) -> None:
    """``Accept: application/json``: the device view the live feed also sends."""
    device_id = await home.add_device("dimmer", "Lamp")
    response = await home.post(
        f"/dashboard/devices/{device_id}/state",
        {"power": "ON", "brightness": "60"},
        headers={"Accept": "application/json"},
    )
    assert response.status == 200
    body = await response.json()
    view = body["device"]
    assert (view["id"], view["version"], view["state_text"]) == (device_id, 2, "On · 60 %")
    assert view["state"] == {"power": "ON", "brightness": 60}


async def test_the_snapshot_has_the_households_devices_and_newest_activity(
    make_app: MakeApp, browse: Browse
) -> None:
    """What a reconnecting page reads: its own household only."""
    app = make_app()
    mine = await sign_in_home(browse, app, "sam@example.com")
    theirs = await sign_in_home(browse, app, "eve@example.net", own_tenant=True)
    lamp = await mine.add_device("switch", "Lamp")
    await theirs.add_device("switch", "Theirs")
    await mine.post(f"/dashboard/devices/{lamp}/state", {"power": "ON"})
    response = await mine.browser.get("/dashboard/state.json")
    assert response.headers["Cache-Control"] == "no-store"
    snapshot = await response.json()
    assert [d["name"] for d in snapshot["devices"]] == ["Lamp"]
    assert snapshot["devices"][0]["state"] == {"power": "ON"}
    assert [a["text"] for a in snapshot["activity"]] == ["Turned on", "Created (Switch)"]
    assert {a["device_id"] for a in snapshot["activity"]} == {lamp}


async def test_another_households_ids_are_404_on_every_device_and_webhook_route(
    make_app: MakeApp, browse: Browse
) -> None:
    """Every route with a device or webhook id, found by walking the router, answers the 404
    page for another tenant's id, GET or POST with a valid token, and changes nothing."""
    app = make_app()
    mine = await sign_in_home(browse, app, "sam@example.com")
    theirs = await sign_in_home(browse, app, "eve@example.net", own_tenant=True)
    their_device = await theirs.add_device("switch", "Theirs")
    hook, _ = await theirs.core.webhooks.create(
        theirs.principal, {"url": "https://hooks.example.com/in"}
    )
    routes = sorted(
        {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
            and route.method in ("GET", "POST")
            and route.resource.canonical.startswith("/dashboard/")
            and (
                "{device_id}" in route.resource.canonical
                or "{webhook_id}" in route.resource.canonical
            )
        }
    )
    assert len(routes) >= 10, routes
    for method, template in routes:
        url = template.replace("{device_id}", their_device).replace("{webhook_id}", hook.id)
        if method == "GET":
            response = await mine.browser.get(url)
        else:
            response = await mine.post(url, FULL_FORM)
        assert response.status == 404, (method, url, response.status)
        assert response.content_type == "text/html", (method, url)
    device = await theirs.core.devices.get(theirs.principal, their_device)
    assert (device.name, device.version) == ("Theirs", 1)
    assert (await theirs.core.webhooks.get(theirs.principal, hook.id)).enabled
    log = await mine.browser.page(f"/dashboard/activity?device={their_device}")
    assert "Theirs" not in log


async def test_the_activity_page_filters_by_device_and_source_and_pages(home: Home) -> None:
    """Fifty rows a page, newest first, an Older link that keeps the filters."""
    lamp = await home.add_device("switch", "Lamp")
    fan = await home.add_device("switch", "Fan")
    for n in range(60):
        await home.core.devices.set_state(
            home.principal, lamp, {"power": "ON" if n % 2 == 0 else "OFF"}, source="api"
        )
    await home.core.devices.set_state(home.principal, fan, {"power": "ON"}, source="ui")
    page = await home.browser.page("/dashboard/activity")
    assert page.count('class="activity-item"') == 50
    older = re.search(r'href="(/dashboard/activity\?cursor=[^"]+)"', page)
    assert older is not None
    rest = await home.browser.page(older.group(1).replace("&amp;", "&"))
    assert rest.count('class="activity-item"') == 13  # 62 state rows + 2 creations, minus 50
    only_api = await home.browser.page(f"/dashboard/activity?source=api&device={lamp}")
    assert only_api.count('class="activity-item"') == 50
    assert 'data-source="ui"' not in only_api
    follow = re.search(r'href="(/dashboard/activity\?[^"]*cursor=[^"]+)"', only_api)
    assert follow is not None
    assert "source=api" in follow.group(1)
    assert f"device={lamp}" in follow.group(1)
    fan_only = await home.browser.page(f"/dashboard/activity?device={fan}")
    assert fan_only.count('class="activity-item"') == 2
    bogus = await home.browser.page("/dashboard/activity?source=nowhere")
    assert bogus.count('class="activity-item"') == 50


async def test_api_keys_are_shown_once_and_revoked(home: Home) -> None:
    """A read key reads but cannot write; revoked, it is refused."""
    made = await home.post("/dashboard/settings/keys", {"key_name": "ci-runner", "scope": "read"})
    text = await made.text()
    assert made.status == 200
    secret = re.search(r'id="new-key" type="text" readonly value="(sr_[^"]+)"', text)
    assert secret is not None
    assert secret.group(1) not in await home.browser.page("/dashboard/settings")
    client = home.browser.client
    auth = {"Authorization": f"Bearer {secret.group(1)}"}
    assert (await client.get("/api/v1/devices", headers=auth)).status == 200
    writing = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "x"}, headers=auth
    )
    assert writing.status == 403
    (key,) = await home.core.auth.list_keys(home.principal)
    revoked = await home.post(f"/dashboard/settings/keys/{key.id}/revoke")
    assert revoked.headers["Location"] == "/dashboard/settings?done=key"
    assert (await client.get("/api/v1/devices", headers=auth)).status == 401
    assert "ci-runner" not in await home.browser.page("/dashboard/settings")
    empty = await home.post("/dashboard/settings/keys", {"key_name": "", "scope": "write"})
    assert empty.status == 422
    assert 'id="key_name-error"' in await empty.text()


async def test_linked_apps_are_listed_and_unlinked(home: Home) -> None:
    """A consented OAuth client shows under Linked apps; unlinking kills its token."""
    from tests.conftest import Account, link_oauth_client

    account = Account(home.user.id, home.user.tenant_id, "", home.user.email)
    grant_id, token = await link_oauth_client(home.core, account)
    page = await home.browser.page("/dashboard/settings")
    assert "Test client" in page
    response = await home.post(f"/dashboard/settings/apps/{grant_id}/revoke")
    assert response.headers["Location"] == "/dashboard/settings?done=app"
    api = await home.browser.client.get(
        "/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status == 401


async def test_billing_off_has_no_billing_page(home: Home) -> None:
    """Self-hosted (billing off): no Billing page at all, so no plan and no limits."""
    response = await home.browser.client.get("/dashboard/billing", allow_redirects=False)
    assert response.status == 404


async def test_the_relay_package_is_for_admins(make_app: MakeApp, browse: Browse) -> None:
    """It holds the relay secret: members get the 404 page."""
    app = make_app()
    admin = await sign_in_home(browse, app, "sam@example.com")
    member = await sign_in_home(browse, app, "kim@example.com", is_admin=False)
    path = "/dashboard/integrations/alexa/staterelay-alexa.zip"
    refused = await admin.browser.get(path)  # the public URL is http://localhost:8080
    assert refused.status == 409
    assert "points at this machine (localhost)" in await refused.text()
    assert (await member.browser.get(path)).status == 404
    guide = "/dashboard/integrations/alexa"
    assert "The package cannot be built yet" in await admin.browser.page(guide)
    assert "The package cannot be built yet" not in await member.browser.page(guide)


async def test_the_relay_package_downloads_for_an_https_address(
    make_app: MakeApp, browse: Browse
) -> None:
    """Behind https the admin gets the zip, with the instance's relay secret baked in."""
    browser = await browse(make_app(public_url="https://home.example.com"))
    await add_user(browser.core, "alice@example.com", is_admin=True)
    session = set_cookies(await sign_in_by_hand(browser))
    cookie = {"Cookie": f"__Host-sr_session={session['__Host-sr_session'].value}"}
    guide = await browser.client.get("/dashboard/integrations/alexa", headers=cookie)
    assert "Download staterelay-alexa.zip" in await guide.text()
    download = await browser.client.get(
        "/dashboard/integrations/alexa/staterelay-alexa.zip", headers=cookie
    )
    assert download.status == 200
    assert download.content_type == "application/zip"
    assert download.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(await download.read())) as archive:
        code = archive.read("lambda_function.py").decode()
    assert "https://home.example.com" in code
    settings = browser.app[SETTINGS_KEY]
    assert relay_secret(load_or_create_secret(settings.secret_key_path)) in code


async def test_alexa_and_ifttt_show_their_link_health(home: Home) -> None:
    """Not set up, then linked (region, token, last event), then unlinked from the page."""
    page = await home.browser.page("/dashboard/integrations")
    assert page.count("Not set up</span>") == 3  # Alexa, IFTTT and Google Home
    await home.core.alexa.link(
        home.principal, access_token="a", refresh_token="r", expires_in=3600, region="EU"
    )
    await home.core.oauth.create_client(
        client_id="ifttt",
        name="IFTTT",
        redirect_uris=["https://ifttt.com/channels/staterelay/authorize"],
        token_endpoint_auth_method="client_secret_post",
        scopes=["ifttt"],
    )
    from tests.conftest import Account, link_oauth_client

    account = Account(home.user.id, home.user.tenant_id, "", home.user.email)
    await link_oauth_client(home.core, account, client_id="ifttt")
    page = await home.browser.page("/dashboard/integrations")
    assert "Linked · EU" in page
    assert "Healthy" in page
    assert "Triggers watching your devices</dt><dd>0</dd>" in page
    assert "Proactive events are not configured on this server" in page
    dashboard = await home.browser.page("/dashboard")
    assert 'href="/dashboard/integrations#alexa" data-state="attention"' in dashboard
    assert 'href="/dashboard/integrations#ifttt" data-state="linked"' in dashboard
    unlinked = await home.post("/dashboard/integrations/alexa/unlink")
    assert unlinked.headers["Location"] == "/dashboard/integrations?done=alexa-unlinked"
    assert not (await home.core.alexa.status(home.principal)).linked
    again = await home.post("/dashboard/integrations/alexa/unlink")
    assert again.status == 404
    ifttt = await home.post("/dashboard/integrations/ifttt/unlink")
    assert ifttt.headers["Location"] == "/dashboard/integrations?done=ifttt-unlinked"
    assert await home.core.oauth.list_grants(home.principal) == []


async def test_webhooks_are_created_tested_and_deleted(
    settings: Settings, browse: Browse, aiohttp_server: Any
) -> None:
    """The secret is shown once, a test event arrives, its delivery is listed."""
    # The real clock: the store stamps outbox rows with the database's time.
    home = await sign_in_home(browse, create_app(settings), "sam@example.com")
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    server = await aiohttp_server(receiver)
    url = f"http://127.0.0.1:{server.port}/hook"
    every_event = {f"event:{name}": "on" for name in EVENT_TYPES}
    made = await home.post(
        "/dashboard/integrations/webhooks",
        {"format": "standard", "url": url, "description": "Home Assistant", **every_event},
    )
    text = await made.text()
    assert made.status == 200
    assert re.search(r'id="webhook-secret" type="text" readonly value="whsec_', text)
    (hook,) = (await home.core.webhooks.list(home.principal)).items
    assert hook.event_types is None  # every kind ticked: also the kinds added later
    assert "whsec_" not in await home.browser.page(f"/dashboard/integrations/webhooks/{hook.id}")
    tested = await home.post(f"/dashboard/integrations/webhooks/{hook.id}/test")
    assert tested.headers["Location"].endswith("?done=tested")
    for _ in range(100):
        if (
            await home.core.webhooks.deliveries(home.principal, hook.id, cursor=None, limit=5)
        ).items:
            break
        await asyncio.sleep(0.02)
    assert [r.get("type") for r in received] == ["webhook.test"]
    page = await home.browser.page(f"/dashboard/integrations/webhooks/{hook.id}")
    assert "<code>webhook.test</code>" in page
    assert '<span class="ok-text">204</span>' in page
    off = await home.post(f"/dashboard/integrations/webhooks/{hook.id}/enabled", {"enabled": "off"})
    assert off.headers["Location"].endswith("?done=disabled")
    assert not (await home.core.webhooks.get(home.principal, hook.id)).enabled
    gone = await home.post(f"/dashboard/integrations/webhooks/{hook.id}/delete")
    assert gone.headers["Location"] == "/dashboard/integrations?done=webhook-deleted"
    assert (await home.core.webhooks.list(home.principal)).items == ()


async def test_the_ifttt_webhooks_preset_and_webhook_form_errors(home: Home) -> None:
    """IFTTT Webhooks needs an event and a key, not a URL; errors sit next to the fields."""
    made = await home.post(
        "/dashboard/integrations/webhooks",
        {
            "format": "ifttt_webhooks",
            "ifttt_event": "door_opened",
            "ifttt_key": "dL3kXq9vQw",
            "event:state.changed": "on",
        },
    )
    assert made.status == 200
    (hook,) = (await home.core.webhooks.list(home.principal)).items
    assert (hook.format, hook.url, hook.ifttt_event) == (
        "ifttt_webhooks",
        "https://maker.ifttt.com",
        "door_opened",
    )
    cases = [
        ({"format": "standard", "url": "ftp://x"}, "url"),
        ({"format": "standard", "url": "https://hooks.example.com/x"}, "event_types"),
        (
            {"format": "ifttt_webhooks", "ifttt_key": "dL3kXq9vQw", "event:state.changed": "on"},
            "ifttt_event",
        ),
    ]
    for fields, field in cases:
        if field != "event_types":
            fields.setdefault("event:state.changed", "on")
        response = await home.post("/dashboard/integrations/webhooks", fields)
        assert response.status == 422, fields
        text = await response.text()
        assert f'class="field-error" id="{field}-error"' in text, field
    assert len((await home.core.webhooks.list(home.principal)).items) == 1
    # Human labels, and nothing typed is lost (the key included).
    bad = await home.post(
        "/dashboard/integrations/webhooks",
        {
            "format": "ifttt_webhooks",
            "ifttt_event": "door opened!",
            "ifttt_key": "dL3kXq9vQw",
            "description": "Door to IFTTT",
            "event:state.changed": "on",
        },
    )
    text = await bad.text()
    assert "IFTTT event name must be 1 to 64 letters, digits or underscores." in text
    assert "Ifttt_event" not in text
    assert 'value="door opened!"' in text
    assert 'value="dL3kXq9vQw"' in text
    assert 'value="Door to IFTTT"' in text


async def test_a_taken_name_keeps_the_form_and_says_so_next_to_the_name(home: Home) -> None:
    """Create and rename: 409 with the form as typed, not a page of its own."""
    await home.add_device("switch", "Porch")
    lamp = await home.add_device("dimmer", "Lamp")
    taken = await home.post(
        "/dashboard/devices/new",
        {"type": "switch", "name": "porch", "room": "Garden", "description": "by the gate"},
    )
    assert taken.status == 409
    text = await taken.text()
    assert "There is a device called “porch” already. Choose another name." in text
    for kept in ('value="porch"', 'value="Garden"', 'value="by the gate"'):
        assert kept in text
    renamed = await home.post(
        f"/dashboard/devices/{lamp}/settings", {"name": "Porch", "room": "Study"}
    )
    assert renamed.status == 409
    text = await renamed.text()
    assert 'id="name-error">There is a device called “Porch” already.' in text
    assert 'value="Study"' in text
    assert (await home.core.devices.get(home.principal, lamp)).name == "Lamp"


async def test_billing_shows_only_when_billing_is_on(home: Home) -> None:
    page = await home.browser.page("/dashboard/settings")
    assert 'href="/dashboard/billing"' not in page
    assert "Plan and billing" not in page
