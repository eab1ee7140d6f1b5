"""``POST /alexa/smart_home``: every directive StateRelay supports, and every way one fails."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import pytest

from staterelay.core import Core
from staterelay.core.clock import iso
from staterelay.core.records import Principal
from staterelay.integrations.alexa.directive import Directive
from staterelay.integrations.alexa.handlers import HANDLERS, HandlerContext
from tests.alexa.conftest import (
    RELAY_SECRET,
    Amazon,
    Clock,
    accept_grant,
    assert_valid,
    directive,
    send,
)
from tests.conftest import make_account
from tests.oauth.conftest import Client

CORRELATION = "dFMb0z+PgpgdDmluhJ1LddFvSqZ/jCc8ptlAKulUj90jSqg=="


def properties(answer: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """``(namespace, name) -> value`` of an answer's context."""
    return {(p["namespace"], p["name"]): p["value"] for p in answer["context"]["properties"]}


def error_type(answer: dict[str, Any]) -> str:
    """The ErrorResponse type, after checking the envelope."""
    assert answer["event"]["header"]["name"] == "ErrorResponse", answer
    assert "context" not in answer
    kind: str = answer["event"]["payload"]["type"]
    return kind


async def make(core: Core, principal: Principal, type: str, name: str, **fields: Any) -> Any:
    """A device of the linked user's household."""
    return await core.devices.create(principal, type=type, name=name, source="api", **fields)


async def test_discovery_lists_every_device_as_designed(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    lamp = await make(core, principal, "switch", "Hall lamp")
    movie = await make(core, principal, "switch", "Movie mode", options={"routine_trigger": True})
    desk = await make(core, principal, "dimmer", "Desk light", description="By the window")
    door = await make(core, principal, "contact_sensor", "Front door")
    hall = await make(core, principal, "motion_sensor", "Hall motion")
    temp = await make(core, principal, "temperature_sensor", "Cellar")
    bell = await make(core, principal, "button", "Panic button")
    status, answer = await send(browser, directive("Alexa.Discovery", "Discover", token, None))
    assert status == 200
    assert_valid(answer)
    head = answer["event"]["header"]
    assert (head["namespace"], head["name"]) == ("Alexa.Discovery", "Discover.Response")
    assert "correlationToken" not in head
    found = {e["endpointId"]: e for e in answer["event"]["payload"]["endpoints"]}
    assert list(found) == [lamp.id, movie.id, desk.id, door.id, hall.id, temp.id, bell.id]

    def interfaces(device: Any) -> list[str]:
        return [c["interface"] for c in found[device.id]["capabilities"]]

    assert interfaces(lamp) == ["Alexa", "Alexa.PowerController", "Alexa.EndpointHealth"]
    assert interfaces(movie) == [
        "Alexa",
        "Alexa.PowerController",
        "Alexa.ContactSensor",
        "Alexa.EndpointHealth",
    ]
    assert found[movie.id]["displayCategories"] == ["SWITCH", "CONTACT_SENSOR"]
    assert interfaces(desk) == [
        "Alexa",
        "Alexa.PowerController",
        "Alexa.BrightnessController",
        "Alexa.EndpointHealth",
    ]
    assert found[desk.id]["description"] == "By the window"
    assert found[desk.id]["displayCategories"] == ["LIGHT"]
    assert interfaces(door) == ["Alexa", "Alexa.ContactSensor", "Alexa.EndpointHealth"]
    assert interfaces(hall) == ["Alexa", "Alexa.MotionSensor", "Alexa.EndpointHealth"]
    assert interfaces(temp) == ["Alexa", "Alexa.TemperatureSensor", "Alexa.EndpointHealth"]
    assert interfaces(bell) == ["Alexa", "Alexa.DoorbellEventSource", "Alexa.EndpointHealth"]
    assert found[bell.id]["displayCategories"] == ["DOORBELL"]
    for endpoint in found.values():
        assert endpoint["manufacturerName"] == "StateRelay"
        for capability in endpoint["capabilities"]:
            assert capability["version"] == "3"
            if capability["interface"] == "Alexa.DoorbellEventSource":
                assert capability["proactivelyReported"] is True
            elif capability["interface"] != "Alexa":
                props = capability["properties"]
                assert props["proactivelyReported"] is True
                assert props["retrievable"] is True
    assert found[lamp.id]["description"] == "Virtual switch by StateRelay"
    assert found[lamp.id]["friendlyName"] == "Hall lamp"


async def test_discovery_stops_at_300_endpoints(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    for n in range(300):
        await make(core, principal, "switch", f"Switch {n}")
    status, answer = await send(browser, directive("Alexa.Discovery", "Discover", token))
    assert status == 200
    assert len(answer["event"]["payload"]["endpoints"]) == 300
    assert_valid(answer)


async def test_turn_on_changes_state_through_core_for_everyone(
    browser: Client, core: Core, principal: Principal, token: str, clock: Clock
) -> None:
    lamp = await make(core, principal, "switch", "Hall lamp")
    clock.now += 5
    status, answer = await send(
        browser, directive("Alexa.PowerController", "TurnOn", token, lamp.id)
    )
    assert status == 200
    assert_valid(answer)
    head = answer["event"]["header"]
    assert (head["namespace"], head["name"]) == ("Alexa", "Response")
    assert head["correlationToken"] == CORRELATION
    assert head["messageId"] != "1bd5d003-31b9-476f-ad03-71d471922820"
    assert uuid.UUID(head["messageId"]).version == 4
    assert answer["event"]["endpoint"] == {"endpointId": lamp.id}
    assert properties(answer) == {
        ("Alexa.PowerController", "powerState"): "ON",
        ("Alexa.EndpointHealth", "connectivity"): {"value": "OK"},
    }
    power = answer["context"]["properties"][0]
    assert power["timeOfSample"] == iso(clock.now)
    assert power["uncertaintyInMilliseconds"] == 0
    device = await core.devices.get(principal, lamp.id)
    assert device.properties["power"].value == "ON"
    activity = await core.activity.list(principal, device_id=lamp.id)
    assert activity.items[0].source == "alexa"
    assert activity.items[0].new_value == "ON"
    status, answer = await send(
        browser, directive("Alexa.PowerController", "TurnOff", token, lamp.id)
    )
    assert properties(answer)[("Alexa.PowerController", "powerState")] == "OFF"


async def test_routine_switch_answers_with_its_contact_mirror(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    movie = await make(core, principal, "switch", "Movie", options={"routine_trigger": True})
    _, answer = await send(browser, directive("Alexa.PowerController", "TurnOn", token, movie.id))
    assert_valid(answer)
    assert properties(answer) == {
        ("Alexa.PowerController", "powerState"): "ON",
        ("Alexa.ContactSensor", "detectionState"): "DETECTED",
        ("Alexa.EndpointHealth", "connectivity"): {"value": "OK"},
    }


async def test_brightness_set_adjust_and_clamp(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    desk = await make(core, principal, "dimmer", "Desk")
    _, answer = await send(
        browser,
        directive(
            "Alexa.BrightnessController", "SetBrightness", token, desk.id, {"brightness": 40}
        ),
    )
    assert_valid(answer)
    assert properties(answer)[("Alexa.BrightnessController", "brightness")] == 40
    # Setting a level switches a dimmer on.
    assert properties(answer)[("Alexa.PowerController", "powerState")] == "ON"
    _, answer = await send(
        browser,
        directive(
            "Alexa.BrightnessController",
            "AdjustBrightness",
            token,
            desk.id,
            {"brightnessDelta": 75},
        ),
    )
    assert_valid(answer)
    assert properties(answer)[("Alexa.BrightnessController", "brightness")] == 100
    _, answer = await send(
        browser,
        directive(
            "Alexa.BrightnessController",
            "AdjustBrightness",
            token,
            desk.id,
            {"brightnessDelta": -100},
        ),
    )
    # Below 0 is 0, and a dimmer at 0 % is off: it keeps its level for the next TurnOn.
    assert properties(answer)[("Alexa.PowerController", "powerState")] == "OFF"
    assert properties(answer)[("Alexa.BrightnessController", "brightness")] == 100
    device = await core.devices.get(principal, desk.id)
    assert (device.properties["power"].value, device.properties["brightness"].value) == ("OFF", 100)
    _, answer = await send(browser, directive("Alexa.PowerController", "TurnOn", token, desk.id))
    assert properties(answer)[("Alexa.PowerController", "powerState")] == "ON"
    assert properties(answer)[("Alexa.BrightnessController", "brightness")] == 100


async def test_set_brightness_zero_turns_the_dimmer_off_and_on_restores_the_level(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    """ "Alexa, set the desk lamp to 0 %": off, never "on at 0 %"; TurnOn brings 35 back."""
    desk = await make(core, principal, "dimmer", "Desk")

    async def set_level(level: int) -> dict[tuple[str, str], Any]:
        payload = {"brightness": level}
        body = directive("Alexa.BrightnessController", "SetBrightness", token, desk.id, payload)
        _, answer = await send(browser, body)
        assert_valid(answer)
        return properties(answer)

    assert (await set_level(35))[("Alexa.PowerController", "powerState")] == "ON"
    off = await set_level(0)
    assert off[("Alexa.PowerController", "powerState")] == "OFF"
    assert off[("Alexa.BrightnessController", "brightness")] == 35
    _, answer = await send(browser, directive("Alexa.PowerController", "TurnOn", token, desk.id))
    assert properties(answer)[("Alexa.BrightnessController", "brightness")] == 35


async def test_concurrent_adjustments_all_count(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    """Ten "brighter by 5" at once (several Echo devices, a Routine): each step is computed
    inside its own write, so all ten land: 20 % becomes 70 %."""
    desk = await make(core, principal, "dimmer", "Desk")
    await core.devices.set_state(principal, desk.id, {"brightness": 20}, source="api")
    payload = {"brightnessDelta": 5}
    answers = await asyncio.gather(
        *(
            send(
                browser,
                directive(
                    "Alexa.BrightnessController", "AdjustBrightness", token, desk.id, payload
                ),
            )
            for _ in range(10)
        )
    )
    assert [status for status, _ in answers] == [200] * 10
    device = await core.devices.get(principal, desk.id)
    assert device.properties["brightness"].value == 70
    levels = sorted(properties(a)[("Alexa.BrightnessController", "brightness")] for _, a in answers)
    assert levels == list(range(25, 75, 5))


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("SetBrightness", {"brightness": 101}, "VALUE_OUT_OF_RANGE"),
        ("SetBrightness", {"brightness": -1}, "VALUE_OUT_OF_RANGE"),
        ("SetBrightness", {"brightness": "bright"}, "INVALID_VALUE"),
        ("SetBrightness", {"brightness": True}, "INVALID_VALUE"),
        ("SetBrightness", {}, "INVALID_VALUE"),
        ("AdjustBrightness", {"brightnessDelta": None}, "INVALID_VALUE"),
        ("AdjustBrightness", {"brightnessDelta": 500}, "VALUE_OUT_OF_RANGE"),
    ],
)
async def test_bad_brightness_values(
    browser: Client,
    core: Core,
    principal: Principal,
    token: str,
    name: str,
    payload: dict[str, Any],
    expected: str,
) -> None:
    desk = await make(core, principal, "dimmer", "Desk")
    _, answer = await send(
        browser, directive("Alexa.BrightnessController", name, token, desk.id, payload)
    )
    assert_valid(answer)
    assert error_type(answer) == expected
    assert answer["event"]["header"]["correlationToken"] == CORRELATION
    assert answer["event"]["endpoint"] == {"endpointId": desk.id}
    if name == "SetBrightness" and expected == "VALUE_OUT_OF_RANGE":
        assert answer["event"]["payload"]["validRange"] == {"minimumValue": 0, "maximumValue": 100}
    device = await core.devices.get(principal, desk.id)
    assert device.version == 1


async def test_report_state_has_every_property_and_connectivity(
    browser: Client, core: Core, principal: Principal, token: str, clock: Clock
) -> None:
    cellar = await make(core, principal, "temperature_sensor", "Cellar")
    created = clock.now
    clock.now += 60
    await core.devices.set_state(principal, cellar.id, {"temperature": 12.5}, source="api")
    changed = clock.now
    clock.now += 30
    _, answer = await send(browser, directive("Alexa", "ReportState", token, cellar.id))
    assert_valid(answer)
    assert answer["event"]["header"]["name"] == "StateReport"
    assert answer["event"]["header"]["correlationToken"] == CORRELATION
    by_name = {p["name"]: p for p in answer["context"]["properties"]}
    assert by_name["temperature"]["value"] == {"value": 12.5, "scale": "CELSIUS"}
    assert by_name["temperature"]["timeOfSample"] == iso(changed)
    assert by_name["connectivity"]["value"] == {"value": "OK"}
    assert by_name["connectivity"]["timeOfSample"] == iso(clock.now)
    assert created < changed
    desk = await make(core, principal, "dimmer", "Desk")
    _, answer = await send(browser, directive("Alexa", "ReportState", token, desk.id))
    assert_valid(answer)
    assert properties(answer) == {
        ("Alexa.PowerController", "powerState"): "OFF",
        ("Alexa.BrightnessController", "brightness"): 100,
        ("Alexa.EndpointHealth", "connectivity"): {"value": "OK"},
    }


async def test_unknown_and_foreign_endpoints(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    stranger = await make_account(core, "mallory@example.net", new_tenant=True)
    theirs = await core.devices.create(
        await core.auth.authenticate(stranger.key), type="switch", name="Theirs", source="api"
    )
    for endpoint_id in ("dev_doesnotexist", theirs.id):
        _, answer = await send(
            browser, directive("Alexa.PowerController", "TurnOn", token, endpoint_id)
        )
        assert_valid(answer)
        assert error_type(answer) == "NO_SUCH_ENDPOINT"
    assert (
        await core.devices.get(await core.auth.authenticate(stranger.key), theirs.id)
    ).properties["power"].value == "OFF"


async def test_directives_the_endpoint_or_statereplay_does_not_support(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    door = await make(core, principal, "contact_sensor", "Door")
    for message in (
        directive("Alexa.PowerController", "TurnOn", token, door.id),
        directive("Alexa.BrightnessController", "SetBrightness", token, door.id, {"brightness": 5}),
        directive("Alexa.LockController", "Lock", token, door.id),
        directive("Alexa.PowerController", "Toggle", token, door.id),
    ):
        _, answer = await send(browser, message)
        assert_valid(answer)
        assert error_type(answer) == "INVALID_DIRECTIVE"
    no_id = directive("Alexa", "ReportState", token, door.id)
    del no_id["directive"]["endpoint"]["endpointId"]
    _, answer = await send(browser, no_id)
    assert_valid(answer)
    assert error_type(answer) == "INVALID_DIRECTIVE"


async def test_bearer_token_problems(
    browser: Client, core: Core, principal: Principal, token: str, clock: Clock
) -> None:
    lamp = await make(core, principal, "switch", "Lamp")
    _, answer = await send(browser, directive("Alexa.PowerController", "TurnOn", "nope", lamp.id))
    assert_valid(answer)
    assert error_type(answer) == "INVALID_AUTHORIZATION_CREDENTIAL"
    message = directive("Alexa.PowerController", "TurnOn", token, lamp.id)
    del message["directive"]["endpoint"]["scope"]
    _, answer = await send(browser, message)
    assert error_type(answer) == "INVALID_AUTHORIZATION_CREDENTIAL"
    _, answer = await send(browser, directive("Alexa.Discovery", "Discover", "sr_revoked"))
    assert_valid(answer)
    assert error_type(answer) == "INVALID_AUTHORIZATION_CREDENTIAL"
    clock.now += 3601  # the OAuth access token's lifetime
    _, answer = await send(browser, directive("Alexa.PowerController", "TurnOn", token, lamp.id))
    assert_valid(answer)
    assert error_type(answer) == "EXPIRED_AUTHORIZATION_CREDENTIAL"
    assert answer["event"]["header"]["correlationToken"] == CORRELATION
    device = await core.devices.get(principal, lamp.id)
    assert device.properties["power"].value == "OFF"


async def test_relay_secret_is_required_and_compared(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    lamp = await make(core, principal, "switch", "Lamp")
    message = directive("Alexa.PowerController", "TurnOn", token, lamp.id)
    for secret in (None, "", "wrong", RELAY_SECRET + "x"):
        status, _ = await send(browser, message, secret=secret)
        assert status == 401
    assert (await core.devices.get(principal, lamp.id)).properties["power"].value == "OFF"
    status, answer = await send(browser, message)
    assert status == 200
    assert answer["event"]["header"]["name"] == "Response"


async def test_malformed_bodies(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    for raw in (b"{not json", b"[]", b'{"directive": 3}', b'{"directive": {"payload": {}}}', b""):
        status, answer = await send(browser, None, raw=raw)
        assert status == 400, raw
        assert error_type(answer) == "INVALID_DIRECTIVE"
        assert_valid(answer)
    # A header survives: the answer is a proper ErrorResponse echoing its correlation token.
    lamp = await make(core, principal, "switch", "Lamp")
    for breakage in (
        {"payloadVersion": 3},
        {"payloadVersion": "2"},
        {"name": None},
        {"namespace": 7},
    ):
        message = directive("Alexa.PowerController", "TurnOn", token, lamp.id)
        message["directive"]["header"].update(breakage)
        status, answer = await send(browser, message)
        assert status == 200
        assert_valid(answer)
        assert error_type(answer) == "INVALID_DIRECTIVE"
        assert answer["event"]["header"]["correlationToken"] == CORRELATION
        assert answer["event"]["endpoint"] == {"endpointId": lamp.id}
    message = directive("Alexa.PowerController", "TurnOn", token, lamp.id)
    message["directive"]["payload"] = "on"
    _, answer = await send(browser, message)
    assert error_type(answer) == "INVALID_DIRECTIVE"
    message = directive("Alexa.PowerController", "TurnOn", token, "has space.dot")
    _, answer = await send(browser, message)
    assert_valid(answer)
    assert error_type(answer) == "INVALID_DIRECTIVE"
    assert "endpoint" not in answer["event"]


async def test_unexpected_failure_is_internal_error_and_logged(
    browser: Client, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(ctx: HandlerContext, directive: Directive, principal: Principal) -> Any:
        raise RuntimeError("boom")

    HANDLERS.register(("Alexa.Test", "Explode"))(explode)
    try:
        with caplog.at_level(logging.ERROR, logger="staterelay.integrations.alexa.views"):
            status, answer = await send(browser, directive("Alexa.Test", "Explode", token, "dev_x"))
    finally:
        HANDLERS._handlers.pop(("Alexa.Test", "Explode"))
    assert status == 200
    assert_valid(answer)
    assert error_type(answer) == "INTERNAL_ERROR"
    assert "boom" not in json.dumps(answer)
    assert any("Alexa.Test.Explode" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)


async def test_a_personal_api_key_is_not_an_alexa_token(browser: Client, core: Core) -> None:
    """Only a linked app's OAuth token speaks for Alexa; an API key gets the auth error."""
    account = await make_account(core, "keyholder@example.com")
    lamp = await core.devices.create(
        await core.auth.authenticate(account.key), type="switch", name="Lamp", source="api"
    )
    _, answer = await send(
        browser, directive("Alexa.PowerController", "TurnOn", account.key, lamp.id)
    )
    assert_valid(answer)
    assert error_type(answer) == "INVALID_AUTHORIZATION_CREDENTIAL"
    again = await core.devices.get(await core.auth.authenticate(account.key), lamp.id)
    assert again.properties["power"].value == "OFF"


async def test_accept_grant_stores_encrypted_tokens_for_the_user(
    browser: Client, core: Core, principal: Principal, token: str, amazon: Amazon
) -> None:
    status, answer = await send(browser, accept_grant(token))
    assert status == 200
    assert_valid(answer)
    assert answer == {
        "event": {
            "header": {
                "namespace": "Alexa.Authorization",
                "name": "AcceptGrant.Response",
                "payloadVersion": "3",
                "messageId": answer["event"]["header"]["messageId"],
            },
            "payload": {},
        }
    }
    [call] = amazon.lwa_calls
    assert call.form() == {
        "grant_type": "authorization_code",
        "code": "ANUbUKCJqlBOpMhwYWxU",
        "client_id": "amzn1.application-oa2-client.staterelaytest",
        "client_secret": "messaging-secret-for-tests",
    }
    status_now = await core.alexa.status(principal)
    assert status_now.linked
    assert status_now.region == "NA"
    grant = await core.store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
    assert grant is not None
    assert grant.access_token_ciphertext is not None
    assert "Atza|" not in grant.access_token_ciphertext
    assert "Atzr|" not in str(grant.refresh_token_ciphertext)
    database = core.store.path.read_bytes()  # type: ignore[attr-defined]
    assert b"Atza|access-1" not in database
    assert b"Atzr|refresh-1" not in database


async def test_accept_grant_region_comes_from_the_lambda_region(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    response = await browser.post(
        "/alexa/smart_home",
        json=accept_grant(token),
        headers={
            "X-StateRelay-Relay-Secret": RELAY_SECRET,
            "X-StateRelay-Lambda-Region": "eu-west-1",
        },
    )
    assert response.status == 200
    assert (await core.alexa.status(principal)).region == "EU"


async def test_accept_grant_failures(
    browser: Client, core: Core, principal: Principal, token: str, amazon: Amazon
) -> None:
    for message in (
        accept_grant(token, code="not-a-code"),  # LWA says invalid_grant
        accept_grant("not-a-token"),
        {"directive": {**accept_grant(token)["directive"], "payload": {"grantee": {}}}},
    ):
        status, answer = await send(browser, message)
        assert status == 200
        assert_valid(answer)
        head = answer["event"]["header"]
        assert (head["namespace"], head["name"]) == ("Alexa.Authorization", "ErrorResponse")
        assert answer["event"]["payload"]["type"] == "ACCEPT_GRANT_FAILED"
        assert "correlationToken" not in head
    assert not (await core.alexa.status(principal)).linked
    assert amazon.server is not None
    await amazon.server.close()  # Login with Amazon unreachable
    _, answer = await send(browser, accept_grant(token))
    assert answer["event"]["payload"]["type"] == "ACCEPT_GRANT_FAILED"
    assert "unreachable" in answer["event"]["payload"]["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400"])
async def test_brightness_beyond_any_number_is_invalid_value(
    browser: Client, core: Core, principal: Principal, token: str, number: str
) -> None:
    """A value JSON parsers read only loosely still gets the directive's own error answer."""
    desk = await make(core, principal, "dimmer", "Desk")
    body = json.dumps(
        directive("Alexa.BrightnessController", "SetBrightness", token, desk.id, {"brightness": 7})
    ).replace('"brightness": 7', f'"brightness": {number}')
    assert number in body
    status, answer = await send(browser, None, raw=body.encode())
    assert status == 200
    assert_valid(answer)
    assert error_type(answer) == "INVALID_VALUE"
    assert answer["event"]["header"]["correlationToken"] == CORRELATION
    device = await core.devices.get(principal, desk.id)
    assert device.version == 1


async def test_a_body_over_the_limit_is_413_as_an_alexa_error_and_changes_nothing(
    browser: Client, core: Core, principal: Principal, token: str, alexa_settings: Any
) -> None:
    """Whole or in pieces, a directive beyond ``server.max_body_bytes`` is refused in the
    relay's wire format; one just within it is served."""
    limit = alexa_settings.server.max_body_bytes
    lamp = await make(core, principal, "switch", "Lamp")
    message = directive("Alexa.PowerController", "TurnOn", token, lamp.id)
    message["directive"]["payload"] = {"padding": ""}
    message["directive"]["payload"]["padding"] = "x" * (limit - len(json.dumps(message)))
    fits = json.dumps(message).encode()
    assert len(fits) == limit
    message["directive"]["payload"]["padding"] += "x"
    too_big = json.dumps(message).encode()

    async def pieces() -> Any:
        for start in range(0, len(too_big), 4096):
            yield too_big[start : start + 4096]
            await asyncio.sleep(0)

    for data in (too_big, pieces()):
        response = await browser.post(
            "/alexa/smart_home",
            data=data,
            headers={"Content-Type": "application/json", "X-StateRelay-Relay-Secret": RELAY_SECRET},
        )
        assert response.status == 413
        answer = await response.json()
        assert_valid(answer)
        assert error_type(answer) == "INVALID_DIRECTIVE"
        assert str(limit) in answer["event"]["payload"]["message"]
    assert (await core.devices.get(principal, lamp.id)).properties["power"].value == "OFF"
    status, answer = await send(browser, None, raw=fits)
    assert status == 200
    assert answer["event"]["header"]["name"] == "Response"
    assert (await core.devices.get(principal, lamp.id)).properties["power"].value == "ON"


def test_message_ids_are_fresh_version_4_uuids() -> None:
    """Ids are handed out from blocks of random bytes: across several blocks, every one is a
    well-formed UUID4 and none repeats."""
    from staterelay.integrations.alexa.directive import new_message_id

    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
