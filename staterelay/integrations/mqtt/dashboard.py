"""The bridge on the dashboard and in the API: its card, its set-up page, its status.

The card and ``GET /api/v1/integrations/mqtt`` show whether the broker is reachable, when
discovery was last published and the last command received; only the household the bridge
serves sees them (any other gets "not found").
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from staterelay.app.integration import Card, CardFacts
from staterelay.browser.principal import require_principal
from staterelay.browser.render import render, when
from staterelay.core.errors import NotAuthenticated, NotFound
from staterelay.core.guide import GuideStep, GuideValue
from staterelay.core.records import Principal
from staterelay.integrations.mqtt.bridge import Bridge

SETUP_PATH: Final = "/dashboard/integrations/mqtt"
API_PATH: Final = "/api/v1/integrations/mqtt"
BRIDGE_KEY: Final = web.AppKey("staterelay.integrations.mqtt.bridge", Bridge)

routes = web.RouteTableDef()


def _serves(bridge: Bridge, principal: Principal) -> bool:
    return bridge.served_tenant == principal.tenant_id


def summary(bridge: Bridge) -> dict[str, Any]:
    """The chip: connected, waiting for the broker, or not running here."""
    status = bridge.status
    if status.connected:
        return {"state": "linked", "label": "Connected", "detail": ""}
    if bridge.served_problem:
        return {"state": "attention", "label": "Waiting", "detail": bridge.served_problem}
    if not status.leader:
        return {
            "state": "attention",
            "label": "Not running here",
            "detail": "another replica runs the bridge, or it starts in a moment",
        }
    return {"state": "error", "label": "Broker unreachable", "detail": status.last_error or ""}


async def card_view(facts: CardFacts) -> dict[str, Any]:
    """The bridge's connection, discovery and last command, for its card and chip."""
    bridge = facts.request.config_dict[BRIDGE_KEY]
    if not _serves(bridge, facts.principal):
        return {
            "state": "off",
            "label": "Another household",
            "text": "The MQTT bridge of this instance serves another household.",
        }
    status = bridge.status
    return {
        **summary(bridge),
        "text": "Every device on your MQTT broker, discovered by Home Assistant.",
        "facts": [
            ("Broker", bridge.broker_name),
            ("Broker reachable", "yes" if status.connected else "no"),
            (
                "Discovery published",
                when(status.discovery_at) if status.discovery_at else "not yet",
            ),
            (
                "Last command",
                when(status.last_command_at) if status.last_command_at else "none yet",
            ),
        ],
    }


CARD: Final = Card(
    key="mqtt",
    title="MQTT and Home Assistant",
    name="MQTT",
    icon="switch",
    view=card_view,
    setup_path=SETUP_PATH,
)


@routes.get(SETUP_PATH, name="guide_mqtt")
async def mqtt_guide(request: web.Request) -> web.StreamResponse:
    """The broker, Home Assistant's MQTT integration, and a first command."""
    _signed_in, principal = await require_principal(request)
    bridge = request.config_dict[BRIDGE_KEY]
    if not _serves(bridge, principal):
        raise NotFound("the MQTT bridge serves another household")
    status = bridge.status
    topics = bridge.topics
    steps = [
        GuideStep(
            key="broker",
            title="Reach the broker",
            text="StateRelay connects to the broker in mqtt.url and says online on its status "
            "topic; it reconnects by itself when the broker restarts.",
            values=(GuideValue("Broker", bridge.broker_name),),
            done=status.connected,
            done_text="connected",
        ),
        GuideStep(
            key="discovery",
            title="Let Home Assistant discover the devices",
            text="Add Home Assistant's MQTT integration for the same broker. Every device "
            "appears with the right entity type, in the room it is in; nothing else to set.",
            values=(GuideValue("Discovery prefix", bridge.discovery_prefix),),
            done=status.discovery_at is not None,
            done_text="discovery published",
        ),
        GuideStep(
            key="command",
            title="Switch a device from the other side",
            text="Switch a device in Home Assistant, or publish JSON to its set topic "
            "(Node-RED, openHAB, mosquitto_pub); the change shows here at once.",
            values=(
                GuideValue("State topic", topics.state("<device id>")),
                GuideValue("Command topic", topics.set("<device id>")),
                GuideValue("Example", '{"power": "ON"}'),
            ),
            done=status.last_command_at is not None,
            done_text="a command arrived",
        ),
    ]
    return render(
        request,
        "guide.html",
        {
            "nav": "integrations",
            "page": "mqtt",
            "title": "Connect MQTT and Home Assistant",
            "lead": "Every device on your MQTT broker, discovered by Home Assistant.",
            "steps": steps,
            "notice": None,
            "errors": {},
            "form": {},
        },
    )


@routes.get(API_PATH, name="integration-mqtt", allow_head=False)
async def mqtt_status(request: web.Request) -> web.Response:
    """The bridge's status for a bearer credential of the household it serves."""
    core_auth = request.config_dict[BRIDGE_KEY].core.auth
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send an API key as 'Authorization: Bearer <key>'")
    principal = await core_auth.authenticate(token.strip())
    bridge = request.config_dict[BRIDGE_KEY]
    if not _serves(bridge, principal):
        raise NotFound("no MQTT bridge serves this household")
    return web.json_response(
        {
            "enabled": True,
            "broker": bridge.broker_name,
            "base_topic": bridge.topics.base,
            "discovery_prefix": bridge.discovery_prefix,
            **bridge.status.as_json(),
        }
    )
