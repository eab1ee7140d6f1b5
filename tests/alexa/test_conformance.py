"""Amazon's sample directives replayed against StateRelay; every answer checked by the schema.

The samples' endpoint ``endpoint-001`` and token ``access-token-from-skill`` are mapped to a
device and a real OAuth access token of the test household. Samples of interfaces StateRelay
does not implement must get a schema-valid ``INVALID_DIRECTIVE``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from staterelay.core import Core
from staterelay.core.records import Principal
from tests.alexa.conftest import assert_valid, conformance_dir, sample, send
from tests.oauth.conftest import Client

SUPPORTED = {
    "Discovery/Discovery.request.json": "Discovery/Discovery.response.json",
    "PowerController/PowerController.TurnOn.request.json": (
        "PowerController/PowerController.TurnOn.response.json"
    ),
    "PowerController/PowerController.TurnOff.request.json": (
        "PowerController/PowerController.TurnOff.response.json"
    ),
    "BrightnessController/BrightnessController.SetBrightness.request.json": (
        "BrightnessController/BrightnessController.SetBrightness.response.json"
    ),
    "BrightnessController/BrightnessController.AdjustBrightness.request.json": (
        "BrightnessController/BrightnessController.AdjustBrightness.response.json"
    ),
    "StateReport/ReportState.json": "StateReport/StateReport.json",
    "Authorization/Authorization.AcceptGrant.request.json": (
        "Authorization/Authorization.AcceptGrant.response.json"
    ),
}


def directive_samples() -> list[str]:
    """Every directive among Amazon's samples (requests, ReportState, Discover)."""
    folder = conformance_dir() / "alexa" / "samples"
    names = sorted(
        str(path.relative_to(folder))
        for path in folder.glob("*/*.json")
        if "directive" in json.loads(path.read_text(encoding="utf-8"))
    )
    return names


def localize(message: Any, endpoint_id: str, token: str) -> Any:
    """The sample with its endpoint and token replaced by ours."""
    text = json.dumps(message)
    text = text.replace('"endpoint-001"', json.dumps(endpoint_id))
    text = text.replace('"access-token-from-skill"', json.dumps(token))
    return json.loads(text)


def test_every_supported_sample_is_among_amazons() -> None:
    """The replay below covers each supported directive sample Amazon publishes."""
    names = directive_samples()
    assert len(names) == 41
    assert set(SUPPORTED) <= set(names)
    for response in SUPPORTED.values():
        assert_valid(sample(response))


@pytest.mark.parametrize("name", sorted(SUPPORTED))
async def test_supported_samples(
    name: str, browser: Client, core: Core, principal: Principal, token: str
) -> None:
    dimmer = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    await core.devices.set_state(principal, dimmer.id, {"brightness": 100}, source="api")
    request = localize(sample(name), dimmer.id, token)
    expected = sample(SUPPORTED[name])
    status, answer = await send(browser, copy.deepcopy(request))
    assert status == 200
    assert_valid(answer)
    head, want = answer["event"]["header"], expected["event"]["header"]
    assert (head["namespace"], head["name"]) == (want["namespace"], want["name"]), answer
    assert head["payloadVersion"] == "3"
    assert head["messageId"] != request["directive"]["header"]["messageId"]
    assert head.get("correlationToken") == request["directive"]["header"].get("correlationToken")
    if "endpoint" in expected["event"]:
        assert answer["event"]["endpoint"]["endpointId"] == dimmer.id
    if "context" in expected:
        got = {(p["namespace"], p["name"]) for p in answer["context"]["properties"]}
        assert ("Alexa.EndpointHealth", "connectivity") in got
        if name.startswith("BrightnessController"):
            ours = [p for p in answer["context"]["properties"] if p["name"] == "brightness"]
            # The samples set 75, or adjust by -25 from the 100 set above.
            assert ours[0]["value"] == 75


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in (
            "CameraStreamController/CameraStreamController.request.json",
            "ChannelController/ChannelController.ChangeChannel.request.json",
            "ColorController/ColorController.SetColor.request.json",
            "LockController/LockController.Lock.request.json",
            "PercentageController/PercentageController.SetPercentage.request.json",
            "PlaybackController/PlaybackController.Play.request.json",
            "PowerLevelController/PowerLevelController.SetPowerLevel.request.json",
            "SceneController/SceneController.Activate.request.json",
            "Speaker/Speaker.SetVolume.request.json",
            "StepSpeaker/StepSpeaker.SetMute.request.json",
            "ThermostatController/ThermostatController.SetThermostatMode.request.json",
        )
    ],
)
async def test_unsupported_samples_get_invalid_directive(
    name: str, browser: Client, core: Core, principal: Principal, token: str
) -> None:
    dimmer = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    request = localize(sample(name), dimmer.id, token)
    status, answer = await send(browser, request)
    assert status == 200
    assert_valid(answer)
    assert answer["event"]["header"]["name"] == "ErrorResponse"
    assert answer["event"]["payload"]["type"] == "INVALID_DIRECTIVE"
    assert (
        answer["event"]["header"]["correlationToken"]
        == (request["directive"]["header"]["correlationToken"])
    )


async def test_every_unsupported_sample_is_refused_the_same_way(
    browser: Client, core: Core, principal: Principal, token: str
) -> None:
    dimmer = await core.devices.create(principal, type="dimmer", name="Desk", source="api")
    refused = 0
    for name in directive_samples():
        if name in SUPPORTED:
            continue
        status, answer = await send(browser, localize(sample(name), dimmer.id, token))
        assert status == 200, name
        assert_valid(answer)
        assert answer["event"]["payload"]["type"] == "INVALID_DIRECTIVE", name
        refused += 1
    assert refused == 34
