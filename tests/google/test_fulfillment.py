"""The fulfillment as Google calls it: every answer valid against Google's schemas, every
request example of the schemas replayed, errors as Google expects, other households unseen."""

from __future__ import annotations

import copy
import glob
import json
from pathlib import Path
from typing import Any

import pytest

from staterelay.core import Core
from staterelay.core.records import Principal
from tests.conftest import make_account
from tests.google.conftest import (
    JSON,
    assert_device_valid,
    assert_states_valid,
    assert_valid,
    intent,
    request,
    schema_dir,
    synced,
)
from tests.oauth.conftest import Client

SYNC_RESPONSE = "intents/sync/sync.response.schema.json"
QUERY_RESPONSE = "intents/query/query.response.schema.json"
EXECUTE_RESPONSE = "intents/execute/execute.response.schema.json"
DISCONNECT_RESPONSE = "intents/disconnect/disconnect.response.schema.json"

KINDS: list[tuple[str, JSON]] = [
    ("switch", {}),
    ("dimmer", {}),
    ("contact_sensor", {}),
    ("motion_sensor", {}),
    ("temperature_sensor", {"options": {"scale": "FAHRENHEIT"}}),
    ("button", {}),
]


async def principal_of(core: Core, token: str) -> Principal:
    """The principal behind a token."""
    return await core.auth.authenticate(token)


async def make_devices(core: Core, token: str) -> dict[str, str]:
    """One device of every type, in rooms; type -> id."""
    principal = await principal_of(core, token)
    made: dict[str, str] = {}
    for kind, extra in KINDS:
        device = await core.devices.create(
            principal, type=kind, name=f"My {kind}", room="Hall", source="api", **extra
        )
        made[kind] = device.id
    return made


async def test_sync_lists_every_device_schema_valid(
    browser: Client, core: Core, token: str
) -> None:
    """SYNC: the user's id as agentUserId, each device with types, traits, attributes and
    the room as roomHint, all valid against Google's schemas."""
    made = await make_devices(core, token)
    answer = await synced(browser, token)
    principal = await principal_of(core, token)
    assert answer["requestId"] == "6894439706274654512"
    assert answer["payload"]["agentUserId"] == principal.user_id
    devices = {entry["id"]: entry for entry in answer["payload"]["devices"]}
    assert set(devices) == set(made.values())
    for entry in devices.values():
        assert_device_valid(entry)
        assert entry["willReportState"] is True
        assert entry["roomHint"] == "Hall"
    types = {kind: devices[made[kind]]["type"] for kind in made}
    assert types == {
        "switch": "action.devices.types.SWITCH",
        "dimmer": "action.devices.types.LIGHT",
        "contact_sensor": "action.devices.types.SENSOR",
        "motion_sensor": "action.devices.types.SENSOR",
        "temperature_sensor": "action.devices.types.SENSOR",
        "button": "action.devices.types.DOORBELL",
    }
    assert devices[made["contact_sensor"]]["attributes"] == {
        "discreteOnlyOpenClose": True,
        "queryOnlyOpenClose": True,
    }
    temperature = devices[made["temperature_sensor"]]["attributes"]
    assert temperature["queryOnlyTemperatureControl"] is True
    assert temperature["temperatureUnitForUX"] == "F"
    assert devices[made["button"]]["notificationSupportedByAgent"] is True
    assert devices[made["motion_sensor"]]["traits"] == ["action.devices.traits.OccupancySensing"]


async def test_query_answers_every_device_schema_valid(
    browser: Client, core: Core, token: str
) -> None:
    """QUERY: online, SUCCESS and the states of each trait, in Celsius on the wire."""
    made = await make_devices(core, token)
    principal = await principal_of(core, token)
    await core.devices.set_state(
        principal, made["contact_sensor"], {"detection": "DETECTED"}, source="api"
    )
    await core.devices.set_state(
        principal, made["temperature_sensor"], {"temperature": 68}, source="api"
    )
    await core.devices.set_state(principal, made["dimmer"], {"brightness": 40}, source="api")
    sync = await synced(browser, token)
    traits = {entry["id"]: entry["traits"] for entry in sync["payload"]["devices"]}
    body = request("QUERY", {"devices": [{"id": i} for i in made.values()]})
    status, answer = await intent(browser, token, body)
    assert status == 200
    assert_valid(QUERY_RESPONSE, answer)
    devices = answer["payload"]["devices"]
    for device_id, states in devices.items():
        assert states["online"] is True
        assert states["status"] == "SUCCESS"
        assert_states_valid(traits[device_id], states)
    assert devices[made["contact_sensor"]]["openPercent"] == 100
    assert devices[made["motion_sensor"]]["occupancy"] == "UNOCCUPIED"
    assert devices[made["temperature_sensor"]]["temperatureAmbientCelsius"] == 20.0
    assert devices[made["dimmer"]] == {
        "online": True,
        "status": "SUCCESS",
        "on": True,
        "brightness": 40,
    }
    assert devices[made["switch"]]["on"] is False


async def test_execute_switches_and_dims_with_the_dimmer_rule(
    browser: Client, core: Core, token: str
) -> None:
    """EXECUTE: OnOff and brightness commands are committed changes; brightness 0 turns the
    dimmer off and keeps its level; the states after the command come back."""
    made = await make_devices(core, token)
    sync = await synced(browser, token)
    traits = {entry["id"]: entry["traits"] for entry in sync["payload"]["devices"]}
    lamp, dimmer = made["switch"], made["dimmer"]

    async def execute(device_id: str, command: str, params: JSON) -> JSON:
        body = request(
            "EXECUTE",
            {
                "commands": [
                    {
                        "devices": [{"id": device_id}],
                        "execution": [
                            {"command": f"action.devices.commands.{command}", "params": params}
                        ],
                    }
                ]
            },
        )
        status, answer = await intent(browser, token, body)
        assert status == 200
        assert_valid(EXECUTE_RESPONSE, answer)
        [result] = answer["payload"]["commands"]
        if result["status"] == "SUCCESS":
            assert_states_valid(traits[device_id], result["states"])
        return result

    result = await execute(lamp, "OnOff", {"on": True})
    assert result == {"ids": [lamp], "status": "SUCCESS", "states": {"online": True, "on": True}}
    principal = await principal_of(core, token)
    assert (await core.devices.get(principal, lamp)).properties["power"].value == "ON"

    result = await execute(dimmer, "BrightnessAbsolute", {"brightness": 30})
    assert result["states"] == {"online": True, "on": True, "brightness": 30}
    result = await execute(dimmer, "BrightnessAbsolute", {"brightness": 0})
    assert result["states"] == {"online": True, "on": False, "brightness": 30}
    result = await execute(dimmer, "OnOff", {"on": True})
    assert result["states"] == {"online": True, "on": True, "brightness": 30}
    result = await execute(dimmer, "BrightnessRelative", {"brightnessRelativeWeight": -2})
    assert result["states"]["brightness"] == 10
    result = await execute(dimmer, "BrightnessRelative", {"brightnessRelativePercent": 50})
    assert result["states"]["brightness"] == 60

    # Errors, per device, in Google's codes.
    result = await execute(dimmer, "BrightnessAbsolute", {"brightness": 150})
    assert result == {"ids": [dimmer], "status": "ERROR", "errorCode": "valueOutOfRange"}
    result = await execute(lamp, "BrightnessAbsolute", {"brightness": 10})
    assert result["errorCode"] == "functionNotSupported"
    result = await execute(made["contact_sensor"], "OpenClose", {"openPercent": 100})
    assert result["errorCode"] == "functionNotSupported"
    result = await execute(made["temperature_sensor"], "SetTemperature", {"temperature": 21})
    assert result["errorCode"] == "functionNotSupported"
    result = await execute(lamp, "Dance", {})
    assert result["errorCode"] == "notSupported"
    result = await execute(lamp, "OnOff", {"on": "yes"})
    assert result["errorCode"] == "protocolError"
    assert (await core.devices.get(principal, lamp)).properties["power"].value == "ON"


async def test_other_households_are_never_seen(browser: Client, core: Core, token: str) -> None:
    """Another household's devices: absent from SYNC, deviceNotFound in QUERY and EXECUTE,
    and untouched."""
    mine = await make_devices(core, token)
    stranger = await make_account(core, "mallory@example.net", new_tenant=True)
    theirs = await core.devices.create(
        await core.auth.authenticate(stranger.key), type="switch", name="Their lamp", source="api"
    )
    sync = await synced(browser, token)
    assert theirs.id not in {entry["id"] for entry in sync["payload"]["devices"]}
    assert set(mine.values()) == {entry["id"] for entry in sync["payload"]["devices"]}

    status, answer = await intent(
        browser, token, request("QUERY", {"devices": [{"id": theirs.id}, {"id": mine["switch"]}]})
    )
    assert status == 200
    assert_valid(QUERY_RESPONSE, answer)
    assert answer["payload"]["devices"][theirs.id] == {
        "online": False,
        "status": "ERROR",
        "errorCode": "deviceNotFound",
    }
    assert answer["payload"]["devices"][mine["switch"]]["status"] == "SUCCESS"

    execute = request(
        "EXECUTE",
        {
            "commands": [
                {
                    "devices": [{"id": theirs.id}],
                    "execution": [
                        {"command": "action.devices.commands.OnOff", "params": {"on": True}}
                    ],
                }
            ]
        },
    )
    status, answer = await intent(browser, token, execute)
    assert_valid(EXECUTE_RESPONSE, answer)
    assert answer["payload"]["commands"] == [
        {"ids": [theirs.id], "status": "ERROR", "errorCode": "deviceNotFound"}
    ]
    after = await core.devices.get(await core.auth.authenticate(stranger.key), theirs.id)
    assert after.properties["power"].value == "OFF"


async def test_bad_credentials_get_401_so_google_refreshes(
    browser: Client, core: Core, token: str, clock: Any
) -> None:
    """No token, an unknown one, a personal API key, another app's token and an expired
    token: HTTP 401, never a 200 with an error (Google would not refresh)."""
    body = request("SYNC")
    key = await make_account(core, "bob@example.com")
    for bad in (None, "sra_unknown", key.key):
        status, answer = await intent(browser, bad, body)
        assert status == 401, (bad, answer)
        assert answer["error"] == "invalid_token"
    clock.now += 7200  # past the access token's hour
    status, _ = await intent(browser, token, body)
    assert status == 401


async def test_an_other_apps_token_is_refused(browser: Client, core: Core, user: Any) -> None:
    """A token issued to the Alexa client does not work at Google's fulfillment."""
    from tests.google.conftest import basic
    from tests.oauth.conftest import (
        ALEXA_ID,
        ALEXA_SECRET,
        ALEXA_URI,
        authorize_path,
        consent,
        redirect_params,
        sign_in,
    )

    await sign_in(browser, next_path=authorize_path())
    location = await consent(browser, authorize_path(scope="devices"))
    code = redirect_params(location)["code"]
    answer = await browser.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": ALEXA_URI},
        headers={"Authorization": basic(ALEXA_ID, ALEXA_SECRET)},
    )
    alexa_token = (await answer.json())["access_token"]
    status, answer = await intent(browser, alexa_token, request("SYNC"))
    assert status == 401
    assert "Google" in answer["error_description"]


@pytest.mark.parametrize(
    "body",
    [
        {"requestId": "r1"},
        {"requestId": "r1", "inputs": []},
        {"requestId": "r1", "inputs": [{"intent": "action.devices.SYNC"}, {"intent": "x"}]},
        {"requestId": "r1", "inputs": [{"intent": "action.devices.IDENTIFY"}]},
        {"requestId": "r1", "inputs": [{"intent": "action.devices.QUERY", "payload": {}}]},
        {"requestId": "r1", "inputs": [{"intent": "action.devices.EXECUTE", "payload": []}]},
        [1, 2],
    ],
)
async def test_requests_google_never_sends_get_protocol_error(
    browser: Client, token: str, body: Any
) -> None:
    """Malformed requests: HTTP 200 with protocolError, never a 500."""
    status, answer = await intent(browser, token, body)
    assert status == 200
    assert answer["payload"]["errorCode"] == "protocolError"
    assert answer["requestId"] == ("r1" if isinstance(body, dict) else "")


async def test_a_body_that_is_not_json_is_a_protocol_error(browser: Client, token: str) -> None:
    """Not JSON at all."""
    status, answer = await intent(browser, token, None, raw=b"{nope")
    assert status == 200
    assert answer["payload"]["errorCode"] == "protocolError"


async def test_a_body_over_the_limit_is_a_protocol_error(
    browser: Client, token: str, settings: Any
) -> None:
    """Beyond ``server.max_body_bytes``: Google's protocolError, not aiohttp's text page."""
    limit = settings.server.max_body_bytes
    padding = "x" * limit
    raw = json.dumps({"requestId": "r1", "inputs": [], "padding": padding}).encode()
    status, answer = await intent(browser, token, None, raw=raw)
    assert status == 200
    assert answer["payload"]["errorCode"] == "protocolError"
    assert str(limit) in answer["payload"]["debugString"]


def _request_examples() -> list[tuple[str, JSON]]:
    examples = []
    for path in sorted(glob.glob(str(schema_dir() / "intents" / "*" / "*.request.schema.json"))):
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
        for example in schema.get("examples", []):
            examples.append((Path(path).name, example))
    return examples


async def test_every_request_example_of_the_schemas_is_answered(
    browser: Client, core: Core, token: str
) -> None:
    """Google's own request examples, replayed with this user's token: each answer valid
    (the examples' device ids are not this household's: deviceNotFound)."""
    examples = _request_examples()
    assert {name for name, _ in examples} >= {
        "sync.request.schema.json",
        "query.request.schema.json",
        "execute.request.schema.json",
        "disconnect.request.schema.json",
    }
    # DISCONNECT last: it ends the link and revokes the token.
    examples.sort(key=lambda pair: pair[0].startswith("disconnect"))
    for name, example in examples:
        body = copy.deepcopy(example)
        body.pop("$comment", None)
        assert_valid(f"intents/{name.split('.')[0]}/{name}", body)
        status, answer = await intent(browser, token, body)
        assert status == 200, (name, answer)
        kind = name.split(".")[0]
        assert_valid(f"intents/{kind}/{kind}.response.schema.json", answer)
        if kind == "query":
            assert all(
                entry["errorCode"] == "deviceNotFound"
                for entry in answer["payload"]["devices"].values()
            )
        if kind == "execute":
            assert all(
                entry["errorCode"] == "deviceNotFound" for entry in answer["payload"]["commands"]
            )
        if kind == "disconnect":
            assert answer == {}
            status, _ = await intent(browser, token, request("SYNC"))
            assert status == 401
            return
    raise AssertionError("no DISCONNECT example was replayed")
