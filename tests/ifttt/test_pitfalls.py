"""The 15 facts and pitfalls of reference/ifttt.md, one named test each, on a running app."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from staterelay.core import Core
from staterelay.core.ifttt import IftttService
from staterelay.core.ifttt_catalog import ACTIONS, TRIGGERS
from staterelay.core.oauth_clients import ifttt_preset
from tests.ifttt.conftest import (
    SERVICE_KEY,
    V1,
    Client,
    DeviceFactory,
    Linked,
    Realtime,
    SchemaCheck,
    ifttt_client_id,
    poll,
    set_state,
    wait_until,
)
from tests.oauth.conftest import (
    EMAIL,
    PASSWORD,
    authorize_path,
    consent,
    redirect_params,
    sign_in,
)

JSON_UTF8 = "application/json; charset=utf-8"
IFTTT_REDIRECT = "https://ifttt.com/channels/staterelay/authorize"


def assert_errors(body: Any) -> str:
    """Assert IFTTT's error shape; return the first message."""
    assert set(body) == {"errors"}
    assert isinstance(body["errors"], list)
    assert body["errors"]
    assert isinstance(body["errors"][0]["message"], str)
    assert body["errors"][0]["message"]
    return str(body["errors"][0]["message"])


async def test_pitfall_01_paths_data_wrapper_errors_and_content_type(
    client: Client, alice: Linked, make_device: DeviceFactory, conforms: SchemaCheck
) -> None:
    """Everything lives under /ifttt/v1/, success is wrapped in ``data``, errors in
    ``errors``, and both are ``application/json; charset=utf-8`` (even unknown paths)."""
    lamp = await make_device()
    ok = await client.post(
        f"{V1}/triggers/power_changed",
        json={"triggerFields": {"device": lamp.id}},
        headers=alice.headers,
    )
    assert ok.status == 200
    assert ok.headers["Content-Type"] == JSON_UTF8
    conforms("TriggerCheckResponse", await ok.json())
    for method, path in (
        ("GET", f"{V1}/nothing/here"),
        ("POST", f"{V1}/triggers/no_such_trigger"),
        ("GET", f"{V1}/triggers/power_changed"),
    ):
        response = await client.request(method, path, headers=alice.headers)
        assert response.status in (404, 405), (method, path)
        assert response.headers["Content-Type"] == JSON_UTF8
        body = await response.json()
        assert_errors(body)
        conforms("ErrorResponse", body)
    assert (await client.get("/ifttt/status")).status == 404


async def test_pitfall_02_service_key_both_header_names_wrong_or_missing_is_401(
    client: Client, core: Core, conforms: SchemaCheck
) -> None:
    """``IFTTT-Service-Key`` and the legacy ``IFTTT-Channel-Key`` are accepted; a wrong,
    empty or missing key is 401 with ``errors``; the comparison is constant-time."""
    for header in ("IFTTT-Service-Key", "IFTTT-Channel-Key"):
        response = await client.get(f"{V1}/status", headers={header: SERVICE_KEY})
        assert response.status == 200, header
    for headers in (
        {},
        {"IFTTT-Service-Key": ""},
        {"IFTTT-Service-Key": SERVICE_KEY[:-1]},
        {"IFTTT-Service-Key": SERVICE_KEY + "x"},
        {"IFTTT-Channel-Key": "nope"},
        {"Authorization": f"Bearer {SERVICE_KEY}"},
    ):
        for method, path in (("GET", f"{V1}/status"), ("POST", f"{V1}/test/setup")):
            response = await client.request(method, path, headers=headers)
            assert response.status == 401, (headers, path)
            body = await response.json()
            assert_errors(body)
            conforms("ErrorResponse", body)
    assert "hmac.compare_digest" in inspect.getsource(IftttService.check_service_key)


async def test_pitfall_03_bad_bearer_token_is_401_on_every_user_endpoint(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """User endpoints authenticate by the bearer token; an unknown, revoked or missing one
    is 401 with ``errors``, and the token alone says who the user is."""
    lamp = await make_device()
    calls = [
        ("GET", f"{V1}/user/info", None),
        ("POST", f"{V1}/triggers/power_changed", {"triggerFields": {"device": lamp.id}}),
        ("DELETE", f"{V1}/triggers/power_changed/trigger_identity/abc", None),
        ("POST", f"{V1}/triggers/power_changed/fields/device/options", {}),
        ("POST", f"{V1}/actions/set_power/fields/device/options", {}),
        ("POST", f"{V1}/triggers/temperature_crossed_threshold/fields/threshold/validate", {}),
        ("POST", f"{V1}/actions/set_power", {"actionFields": {"device": lamp.id}}),
    ]
    revoked = alice.token
    who = alice.principal
    for grant in await core.oauth.list_user_grants(who.tenant_id, who.user_id):
        await core.oauth.revoke_user_grant(who.tenant_id, who.user_id, grant.grant_id)
    for headers in ({}, {"Authorization": "Bearer sra_unknown"}, {"Authorization": "Basic x"}):
        for method, path, body in calls:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status == 401, (headers, path)
            assert_errors(await response.json())
    for method, path, body in calls:
        response = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {revoked}"}
        )
        assert response.status == 401, path
    assert (await core.devices.get(alice.principal, lamp.id)).version == lamp.version


async def test_pitfall_04_status_is_200_without_body_or_503_when_not_ready(
    client: Client, core: Core
) -> None:
    """``/status`` needs no user token; it is an empty 200, or 503 while the database
    cannot serve (here: a migration pending)."""
    headers = {"IFTTT-Service-Key": SERVICE_KEY}
    response = await client.get(f"{V1}/status", headers=headers)
    assert response.status == 200
    assert await response.read() == b""
    engine = core.store.engine  # type: ignore[attr-defined]
    await engine.write(lambda conn: conn.execute("DELETE FROM schema_migrations WHERE version = 5"))
    try:
        response = await client.get(f"{V1}/status", headers=headers)
        assert response.status == 503
        assert "not ready" in assert_errors(await response.json())
    finally:
        await engine.write(
            lambda conn: conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (5, '0005_ifttt.sql', 0)"
            )
        )
    assert (await client.get(f"{V1}/status", headers=headers)).status == 200


async def test_pitfall_05_user_info_id_is_the_permanent_user_id(
    client: Client, core: Core, alice: Linked, conforms: SchemaCheck
) -> None:
    """``user/info`` answers ``{"data": {"name", "id", "url"}}``; the id is the immutable
    user id (never the token or email) and stays the same across tokens."""
    response = await client.get(f"{V1}/user/info", headers=alice.headers)
    assert response.status == 200
    body = await response.json()
    conforms("UserInfoResponse", body)
    assert body["data"]["id"] == alice.principal.user_id
    assert body["data"]["name"] == "alice@example.com"
    assert body["data"]["url"].startswith("http")
    assert len(body["data"]["id"]) <= 200
    assert alice.token not in str(body)


async def test_pitfall_06_test_setup_gives_a_working_token_and_samples_with_three_events(
    client: Client, core: Core, conforms: SchemaCheck
) -> None:
    """``test/setup`` returns a real access token and samples for every trigger, field
    validation, action and skipped action; every trigger sample yields at least three
    events, and running it again changes nothing it does not need to."""
    await ifttt_client_id(core)
    headers = {"IFTTT-Service-Key": SERVICE_KEY}
    response = await client.post(f"{V1}/test/setup", headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    conforms("TestSetupResponse", body)
    samples = body["data"]["samples"]
    user = {"Authorization": f"Bearer {body['data']['accessToken']}"}
    assert (await client.get(f"{V1}/user/info", headers=user)).status == 200
    assert set(samples["triggers"]) == set(TRIGGERS)
    assert set(samples["actions"]) == set(ACTIONS)
    for slug, fields in samples["triggers"].items():
        answer = await client.post(
            f"{V1}/triggers/{slug}", json={"triggerFields": fields}, headers=user
        )
        assert answer.status == 200, slug
        assert len((await answer.json())["data"]) >= 3, slug
    for slug, fields in samples["triggerFieldValidations"].items():
        for field, values in fields.items():
            path = f"{V1}/triggers/{slug}/fields/{field}/validate"
            good = await client.post(path, json={"value": values["valid"]}, headers=user)
            bad = await client.post(path, json={"value": values["invalid"]}, headers=user)
            assert (await good.json())["data"]["valid"] is True
            assert (await bad.json())["data"]["valid"] is False
    for slug, fields in samples["actions"].items():
        answer = await client.post(
            f"{V1}/actions/{slug}", json={"actionFields": fields}, headers=user
        )
        assert answer.status == 200, slug
    for slug, fields in samples["actionRecordSkipping"].items():
        answer = await client.post(
            f"{V1}/actions/{slug}", json={"actionFields": fields}, headers=user
        )
        assert answer.status == 400, slug
        assert (await answer.json())["errors"][0]["status"] == "SKIP"
    again = await (await client.post(f"{V1}/test/setup", headers=headers)).json()
    assert again["data"]["samples"] == samples  # the same devices, reused


async def test_pitfall_07_trigger_answers_a_timeline_newest_first_not_the_state(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, conforms: SchemaCheck
) -> None:
    """Each transition is an item with ``meta.id`` and an integer ``meta.timestamp`` in
    seconds, newest first; items IFTTT has seen come again; no synthetic current state."""
    lamp = await make_device()
    for value in ("ON", "OFF", "ON"):
        await set_state(core, alice, lamp, power=value)
    status, body = await poll(
        client, alice, "power_changed", {"triggerFields": {"device": lamp.id}}
    )
    assert status == 200
    conforms("TriggerCheckResponse", body)
    assert [item["power"] for item in body["data"]] == ["on", "off", "on"]
    stamps = [item["meta"]["timestamp"] for item in body["data"]]
    assert all(isinstance(stamp, int) for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)
    assert abs(stamps[0] - core.clock()) < 5  # seconds, not milliseconds
    _, again = await poll(client, alice, "power_changed", {"triggerFields": {"device": lamp.id}})
    assert again == body
    fresh = await make_device(name="Untouched")
    _, empty = await poll(client, alice, "power_changed", {"triggerFields": {"device": fresh.id}})
    assert empty == {"data": []}


async def test_pitfall_08_limit_absent_is_50_zero_is_none_one_is_one(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """No ``limit`` gives the 50 newest; ``limit: 0`` gives ``[]`` (never ``limit or 50``);
    ``limit: 1`` exactly one; a negative or non-numeric limit is a 400."""
    lamp = await make_device()
    for n in range(55):
        await set_state(core, alice, lamp, power="ON" if n % 2 == 0 else "OFF")
    fields = {"triggerFields": {"device": lamp.id}}
    assert len((await poll(client, alice, "power_changed", fields))[1]["data"]) == 50
    assert (await poll(client, alice, "power_changed", {**fields, "limit": 0}))[1] == {"data": []}
    one = (await poll(client, alice, "power_changed", {**fields, "limit": 1}))[1]["data"]
    assert len(one) == 1
    assert one[0]["power"] == "on"
    assert (
        len((await poll(client, alice, "power_changed", {**fields, "limit": 55}))[1]["data"]) == 55
    )
    for bad in (-1, "many", True, 1.5):
        status, body = await poll(client, alice, "power_changed", {**fields, "limit": bad})
        assert status == 400, bad
        assert_errors(body)


async def test_pitfall_09_meta_ids_are_unique_and_never_change(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """IFTTT de-duplicates by ``meta.id``: unique per event (even for equal transitions of
    different devices at the same second) and the same on every later poll and rename."""
    lamp = await make_device()
    hall = await make_device(name="Hall")
    for _ in range(3):
        await set_state(core, alice, lamp, power="ON")
        await set_state(core, alice, hall, power="ON")
        await set_state(core, alice, lamp, power="OFF")
        await set_state(core, alice, hall, power="OFF")
    ids: list[str] = []
    first: dict[str, list[str]] = {}
    for device in (lamp, hall):
        _, body = await poll(
            client, alice, "power_changed", {"triggerFields": {"device": device.id}}
        )
        first[device.id] = [item["meta"]["id"] for item in body["data"]]
        ids += first[device.id]
    assert len(ids) == len(set(ids)) == 12
    await core.devices.update(alice.principal, lamp.id, fields={"name": "Renamed"}, source="api")
    await set_state(core, alice, lamp, power="ON")
    _, body = await poll(client, alice, "power_changed", {"triggerFields": {"device": lamp.id}})
    assert [item["meta"]["id"] for item in body["data"]][1:] == first[lamp.id]
    assert body["data"][0]["device_name"] == "Renamed"
    assert body["data"][1]["device_name"] == "Desk lamp"


async def test_pitfall_10_missing_or_invalid_trigger_fields_400_extra_keys_ignored(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, conforms: SchemaCheck
) -> None:
    """No ``triggerFields``, a non-object, a missing device or a bad threshold is 400 with
    ``errors``; keys IFTTT may add anywhere ("with extra data") are ignored."""
    thermometer = await make_device(type="temperature_sensor", name="Porch")
    for body in (
        {},
        {"triggerFields": None},
        {"triggerFields": "dev"},
        {"triggerFields": {}},
        {"triggerFields": {"device": ""}},
        {"triggerFields": {"device": 42}},
    ):
        status, answer = await poll(client, alice, "power_changed", body)
        assert status == 400, body
        conforms("ErrorResponse", answer)
    for fields in (
        {"device": thermometer.id, "direction": "above"},
        {"device": thermometer.id, "direction": "sideways", "threshold": "20"},
        {"device": thermometer.id, "direction": "above", "threshold": "warm"},
        {"device": thermometer.id, "direction": "above", "threshold": "nan"},
    ):
        status, _ = await poll(
            client, alice, "temperature_crossed_threshold", {"triggerFields": fields}
        )
        assert status == 400, fields
    await set_state(core, alice, thermometer, temperature=25)
    extra = {
        "triggerFields": {"device": thermometer.id, "surprise": "x"},
        "trigger_identity": "id-extra",
        "user": {"timezone": "America/Los_Angeles", "new_thing": [1, 2]},
        "ifttt_source": {"id": "2", "url": "https://ifttt.com/myrecipes/personal/2"},
        "random_key_9f2": {"nested": True},
    }
    status, answer = await poll(client, alice, "sensor_value_changed", extra)
    assert status == 200
    assert answer["data"][0]["value"] == "25"
    assert answer["data"][0]["changed_at"].endswith(("-07:00", "-08:00"))


async def test_pitfall_11_actions_answer_an_id_or_skip_for_invalid_input(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, conforms: SchemaCheck
) -> None:
    """An action answers ``{"data": [{"id"}]}``; well-formed but unacceptable input (150 %,
    a deleted device, a switch for a dimmer action) is 400 ``status: SKIP`` and changes
    nothing; a missing ``actionFields`` is a plain 400."""
    dimmer = await make_device(type="dimmer", name="Ceiling")
    lamp = await make_device(name="Lamp")
    gone = await make_device(name="Gone")
    await core.devices.delete(alice.principal, gone.id, source="api")
    ok = await client.post(
        f"{V1}/actions/set_brightness",
        json={"actionFields": {"device": dimmer.id, "brightness": "60"}},
        headers=alice.headers,
    )
    assert ok.status == 200
    body = await ok.json()
    conforms("ActionRunResponse", body)
    assert len(body["data"]) == 1
    assert isinstance(body["data"][0]["id"], str)
    before = await core.devices.get(alice.principal, dimmer.id)
    for slug, fields in (
        ("set_brightness", {"device": dimmer.id, "brightness": "150"}),
        ("set_brightness", {"device": dimmer.id, "brightness": "bright"}),
        ("set_brightness", {"device": lamp.id, "brightness": "20"}),
        ("set_power", {"device": gone.id, "power": "on"}),
        ("set_power", {"device": dimmer.id, "power": "maybe"}),
        ("set_power", {"power": "on"}),
        ("press_button", {"device": lamp.id}),
    ):
        response = await client.post(
            f"{V1}/actions/{slug}", json={"actionFields": fields}, headers=alice.headers
        )
        assert response.status == 400, (slug, fields)
        answer = await response.json()
        conforms("ErrorResponse", answer)
        assert answer["errors"][0]["status"] == "SKIP"
    assert (await core.devices.get(alice.principal, dimmer.id)).version == before.version
    plain = await client.post(f"{V1}/actions/set_power", json={}, headers=alice.headers)
    assert plain.status == 400
    assert "status" not in (await plain.json())["errors"][0]


async def test_pitfall_12_string_fields_string_ingredients_options_without_content_type(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, conforms: SchemaCheck
) -> None:
    """Field values arrive as strings and are parsed (``"60"``, ``"20.5"``); every
    ingredient is a string; options answer ``{}`` sent without a Content-Type."""
    dimmer = await make_device(type="dimmer", name="Ceiling")
    response = await client.post(
        f"{V1}/actions/set_brightness",
        json={"actionFields": {"device": dimmer.id, "brightness": " 60 "}},
        headers=alice.headers,
    )
    assert response.status == 200
    assert (await core.devices.get(alice.principal, dimmer.id)).properties["brightness"].value == 60
    _, body = await poll(
        client, alice, "brightness_changed", {"triggerFields": {"device": dimmer.id}}
    )
    for item in body["data"]:
        assert all(isinstance(value, str) for key, value in item.items() if key != "meta")
    assert body["data"][0]["brightness"] == "60"
    raw = await client.post(
        f"{V1}/actions/set_brightness/fields/device/options", data=b"{}", headers=alice.headers
    )
    assert raw.status == 200
    options = await raw.json()
    conforms("StepFieldOptionsResponse", options)
    assert options == {"data": [{"label": "Ceiling", "value": dimmer.id}]}
    empty = await client.post(
        f"{V1}/triggers/power_changed/fields/device/options", headers=alice.headers
    )
    assert empty.status == 200


async def test_pitfall_13_trigger_identity_stored_and_delete_is_idempotent(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory
) -> None:
    """Every poll stores identity -> (user, trigger, fields); DELETE answers 200 whether or
    not the identity is known, and a later poll brings the identity back."""
    lamp = await make_device()
    body = {"triggerFields": {"device": lamp.id}, "trigger_identity": "ti-13"}
    assert (await poll(client, alice, "power_changed", body))[0] == 200
    [stored] = await core.ifttt.identities(alice.principal)
    assert (stored.identity, stored.trigger, dict(stored.fields)) == (
        "ti-13",
        "power_changed",
        {"device": lamp.id},
    )
    assert stored.user_id == alice.principal.user_id
    assert stored.deleted_at is None
    path = f"{V1}/triggers/power_changed/trigger_identity/ti-13"
    for _ in range(2):
        response = await client.delete(path, headers=alice.headers)
        assert response.status == 200
    unknown = await client.delete(
        f"{V1}/triggers/power_changed/trigger_identity/never-seen", headers=alice.headers
    )
    assert unknown.status == 200
    [deleted] = await core.ifttt.identities(alice.principal)
    assert deleted.deleted_at is not None
    assert (await poll(client, alice, "power_changed", body))[0] == 200
    [back] = await core.ifttt.identities(alice.principal)
    assert back.deleted_at is None


async def test_pitfall_14_realtime_posts_trigger_identities_with_the_service_key(
    client: Client, core: Core, alice: Linked, make_device: DeviceFactory, realtime: Realtime
) -> None:
    """After a change that matters to a stored identity, one POST reaches Realtime with
    ``IFTTT-Service-Key``, ``X-Request-ID`` and ``{"data": [{"trigger_identity"}]}``, off the
    request path; a change nobody polls for sends nothing."""
    lamp = await make_device()
    other = await make_device(name="Nobody polls this")
    await poll(
        client,
        alice,
        "power_changed",
        {"triggerFields": {"device": lamp.id}, "trigger_identity": "ti-14"},
    )
    await set_state(core, alice, other, power="ON")
    await set_state(core, alice, lamp, power="ON")
    await wait_until(lambda: realtime.received)
    await asyncio.sleep(0.3)
    [note] = realtime.received
    assert note.headers["IFTTT-Service-Key"] == SERVICE_KEY
    assert note.headers["Content-Type"].startswith("application/json")
    assert len(note.headers["X-Request-ID"]) == 32
    assert note.body == {"data": [{"trigger_identity": "ti-14"}]}


async def test_pitfall_15_oauth_code_flow_of_the_ifttt_preset_yields_tokens_ifttt_can_use(
    client: Client, core: Core
) -> None:
    """IFTTT links by authorization code with ``scope=ifttt`` and its one redirect URL,
    sends client credentials in the form body, gets 400 ``invalid_grant`` for a used code,
    and ``access_denied`` when the user declines; the token works on user/info."""
    preset = ifttt_preset("staterelay")
    registered, secret = await core.oauth.create_client(
        name=preset.name,
        redirect_uris=preset.redirect_uris,
        token_endpoint_auth_method=preset.token_endpoint_auth_method,
        scopes=preset.scopes,
        client_id="ifttt-flow",
    )
    assert registered.redirect_uris == (IFTTT_REDIRECT,)
    user = await core.users.create(email=EMAIL, password=PASSWORD)
    await sign_in(client)
    path = authorize_path(registered.id, IFTTT_REDIRECT, scope="ifttt")
    location = await consent(client, path)
    assert location.startswith(IFTTT_REDIRECT + "?")
    code = redirect_params(location)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": registered.id,
        "client_secret": secret,
        "redirect_uri": IFTTT_REDIRECT,
    }
    exchanged = await client.post("/oauth/token", data=form)
    assert exchanged.status == 200, await exchanged.text()
    tokens = await exchanged.json()
    assert tokens["token_type"] == "Bearer"
    info = await client.get(
        f"{V1}/user/info", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert (await info.json())["data"]["id"] == user.id
    if "refresh_token" in tokens:
        refreshed = await client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": registered.id,
                "client_secret": secret,
            },
        )
        assert refreshed.status == 200
        again = await refreshed.json()
        works = await client.get(
            f"{V1}/user/info", headers={"Authorization": f"Bearer {again['access_token']}"}
        )
        assert works.status == 200
    reused = await client.post("/oauth/token", data=form)
    assert reused.status == 400
    assert (await reused.json())["error"] == "invalid_grant"
    denied = await consent(client, path, decision="deny")
    assert redirect_params(denied)["error"] == "access_denied"
