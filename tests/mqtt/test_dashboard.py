"""The bridge's card, its chip and its guided set-up page; other households see neither."""

from __future__ import annotations

from aiohttp import web

from staterelay.integrations.mqtt.dashboard import BRIDGE_KEY
from staterelay.settings import Settings
from tests.mqtt.broker import Broker, subscriber
from tests.mqtt.conftest import mqtt_app, wait_for, with_mqtt
from tests.ui.homes import Browse, sign_in_home


async def test_card_and_guide_show_the_connection_discovery_and_last_command(
    browse: Browse, settings: Settings, broker: Broker
) -> None:
    """Connected, discovery published and a command received show on the card and tick the
    guide's steps; a person of another household sees neither the details nor the page."""
    app: web.Application = mqtt_app(with_mqtt(settings, broker, household="sam@example.com"))
    home = await sign_in_home(browse, app, "sam@example.com")
    bridge = app[BRIDGE_KEY]
    await wait_for(lambda: bridge.status.connected)
    device_id = await home.add_device("switch", "Lamp")
    guide = await home.browser.page("/dashboard/integrations/mqtt")
    assert "Reach the broker" in guide
    assert 'data-step="broker" data-done="yes"' in guide
    assert 'data-step="discovery" data-done="yes"' in guide
    assert 'data-step="command" data-done="no"' in guide
    async with subscriber(broker, f"staterelay/{device_id}/state") as recorder:
        await recorder.publish(f"staterelay/{device_id}/set/power", "ON")
        await wait_for(lambda: bridge.status.last_command_at is not None)
    guide = await home.browser.page("/dashboard/integrations/mqtt")
    assert 'data-step="command" data-done="yes"' in guide
    page = await home.browser.page("/dashboard/integrations")
    assert 'id="mqtt"' in page
    assert "Connected" in page
    assert "none yet" not in page.split('id="mqtt"')[1].split("</section>")[0]
    assert broker.url.split("://")[1] in page
    stranger = await sign_in_home(browse, app, "eve@example.org", own_tenant=True)
    other = await stranger.browser.page("/dashboard/integrations")
    card = other.split('id="mqtt"')[1].split("</section>")[0]
    assert "Another household" in card
    assert broker.url.split("://")[1] not in card
    refused = await stranger.browser.get("/dashboard/integrations/mqtt")
    assert refused.status == 404
