"""Directive handlers, registered by ``(namespace, name)`` like Home Assistant's registry.

Each handler gets the context, the parsed directive and the authenticated principal, calls
one core service and returns the message to answer with. State changes go through
``core.devices`` with ``source="alexa"``, so every other surface sees them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from staterelay.core import Core
from staterelay.core.errors import InvalidInput, NotFound
from staterelay.core.records import Device, Principal
from staterelay.integrations.alexa.directive import JSON, Directive, header
from staterelay.integrations.alexa.endpoints import MAX_ENDPOINTS, AlexaEndpoint, endpoints
from staterelay.integrations.alexa.errors import (
    AcceptGrantFailed,
    InvalidDirective,
    InvalidValue,
    NoSuchEndpoint,
    ValueOutOfRangeError,
)
from staterelay.integrations.alexa.lwa import LoginWithAmazon, LwaError

_LOGGER = logging.getLogger(__name__)

SOURCE: Final = "alexa"


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What handlers need besides the directive: core, Login with Amazon and the region."""

    core: Core
    lwa: LoginWithAmazon
    region: str


Handler = Callable[[HandlerContext, Directive, Principal], Awaitable[JSON]]


class Registry:
    """Handlers by ``(namespace, name)``."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def register(self, key: tuple[str, str]) -> Callable[[Handler], Handler]:
        """Decorator: handle directives of ``key``."""

        def decorate(handler: Handler) -> Handler:
            self._handlers[key] = handler
            return handler

        return decorate

    def get(self, key: tuple[str, str]) -> Handler | None:
        """The handler of ``key``, or None."""
        return self._handlers.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._handlers


HANDLERS = Registry()


async def load_endpoint(
    ctx: HandlerContext, directive: Directive, principal: Principal
) -> AlexaEndpoint:
    """The directive's endpoint in the principal's household; ``NO_SUCH_ENDPOINT`` otherwise."""
    if directive.endpoint_id is None:
        raise InvalidDirective(f"{directive.namespace}.{directive.name} needs an endpoint")
    try:
        device = await ctx.core.devices.get(principal, directive.endpoint_id)
    except NotFound:
        raise NoSuchEndpoint(f"no device {directive.endpoint_id} in this household") from None
    return AlexaEndpoint(device)


async def controlled(
    ctx: HandlerContext, directive: Directive, principal: Principal, interface: str
) -> AlexaEndpoint:
    """The endpoint, which must implement ``interface``."""
    endpoint = await load_endpoint(ctx, directive, principal)
    if not endpoint.supports(interface):
        raise InvalidDirective(f"{endpoint.device.name} does not support {interface}")
    return endpoint


def respond(
    ctx: HandlerContext, directive: Directive, device: Device, name: str = "Response"
) -> JSON:
    """The answer with every property of the device as it is now."""
    endpoint = AlexaEndpoint(device)
    return directive.response(endpoint.properties(ctx.core.clock()), name=name)


@HANDLERS.register(("Alexa.Discovery", "Discover"))
async def discover(ctx: HandlerContext, directive: Directive, principal: Principal) -> JSON:
    """Every device of the household (at most 300)."""
    page = await ctx.core.devices.list(principal, limit=MAX_ENDPOINTS)
    return {
        "event": {
            "header": header("Alexa.Discovery", "Discover.Response"),
            "payload": {"endpoints": endpoints(page.items)},
        }
    }


@HANDLERS.register(("Alexa", "ReportState"))
async def report_state(ctx: HandlerContext, directive: Directive, principal: Principal) -> JSON:
    """StateReport with every property and connectivity."""
    endpoint = await load_endpoint(ctx, directive, principal)
    device = endpoint.device
    if await ctx.core.billing.is_suspended(principal.tenant_id, device.id):
        properties = endpoint.properties(ctx.core.clock(), reachable=False)
        return directive.response(properties, name="StateReport")
    return respond(ctx, directive, device, "StateReport")


async def set_values(
    ctx: HandlerContext,
    directive: Directive,
    principal: Principal,
    interface: str,
    values: dict[str, Any] | Callable[[Device], dict[str, Any]],
) -> Device:
    """Change the endpoint's device in one step (no read first: this is the hot path).

    The values are valid for any device that has them, so a refusal from core means the
    device type lacks the property: the endpoint does not implement ``interface``.
    """
    if directive.endpoint_id is None:
        raise InvalidDirective(f"{directive.namespace}.{directive.name} needs an endpoint")
    try:
        return await ctx.core.devices.set_state(
            principal, directive.endpoint_id, values, source=SOURCE
        )
    except NotFound:
        raise NoSuchEndpoint(f"no device {directive.endpoint_id} in this household") from None
    except InvalidInput:
        raise InvalidDirective(f"this endpoint does not support {interface}") from None


@HANDLERS.register(("Alexa.PowerController", "TurnOn"))
async def turn_on(ctx: HandlerContext, directive: Directive, principal: Principal) -> JSON:
    """Power on."""
    device = await set_values(ctx, directive, principal, "Alexa.PowerController", {"power": "ON"})
    return respond(ctx, directive, device)


@HANDLERS.register(("Alexa.PowerController", "TurnOff"))
async def turn_off(ctx: HandlerContext, directive: Directive, principal: Principal) -> JSON:
    """Power off."""
    device = await set_values(ctx, directive, principal, "Alexa.PowerController", {"power": "OFF"})
    return respond(ctx, directive, device)


def _number(payload: Any, field: str) -> float:
    """A finite number from the payload; ``INVALID_VALUE`` otherwise."""
    value = payload.get(field) if isinstance(payload, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"{field} must be a number")
    return float(value)


@HANDLERS.register(("Alexa.BrightnessController", "SetBrightness"))
async def set_brightness(ctx: HandlerContext, directive: Directive, principal: Principal) -> JSON:
    """Set the brightness (0-100); core's dimmer rule switches it on above 0, off at 0."""
    value = _number(directive.payload, "brightness")
    if not 0 <= value <= 100:
        raise ValueOutOfRangeError("brightness must be from 0 to 100", 0, 100)
    device = await set_values(
        ctx, directive, principal, "Alexa.BrightnessController", {"brightness": round(value)}
    )
    return respond(ctx, directive, device)


@HANDLERS.register(("Alexa.BrightnessController", "AdjustBrightness"))
async def adjust_brightness(
    ctx: HandlerContext, directive: Directive, principal: Principal
) -> JSON:
    """Change the brightness by a delta, clamped to 0-100, computed inside the write so
    concurrent adjustments add up; at 0 the dimmer is off."""
    delta = _number(directive.payload, "brightnessDelta")
    if not -100 <= delta <= 100:
        raise ValueOutOfRangeError("brightnessDelta must be from -100 to 100", -100, 100)

    def adjusted(device: Device) -> dict[str, Any]:
        state = device.properties.get("brightness")
        if state is None:
            raise InvalidInput("no brightness", field="brightness")
        return {"brightness": max(0, min(100, round(int(state.value) + delta)))}

    device = await set_values(ctx, directive, principal, "Alexa.BrightnessController", adjusted)
    return respond(ctx, directive, device)


@HANDLERS.register(("Alexa.Authorization", "AcceptGrant"))
async def accept_grant(ctx: HandlerContext, directive: Directive, principal: Principal) -> JSON:
    """Exchange the grant code at Login with Amazon and keep the tokens for this user."""
    grant = directive.payload.get("grant")
    code = grant.get("code") if isinstance(grant, dict) else None
    if not isinstance(code, str) or not code:
        raise AcceptGrantFailed("the directive carries no grant code")
    try:
        tokens = await ctx.lwa.exchange_code(code)
    except LwaError as exc:
        _LOGGER.warning("AcceptGrant failed for user %s: %s", principal.user_id, exc)
        raise AcceptGrantFailed(f"could not exchange the grant code: {exc}") from None
    await ctx.core.alexa.link(
        principal,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        region=ctx.region,
    )
    _LOGGER.info("Alexa linked for user %s (region %s)", principal.user_id, ctx.region)
    return {
        "event": {"header": header("Alexa.Authorization", "AcceptGrant.Response"), "payload": {}}
    }
