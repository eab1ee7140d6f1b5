"""An integration is a plug-in: one defined here, registered by handing ``create_app`` a
registry with it, gets its route, host role, rate limit, card, periodic task and doctor
check without any other file knowing of it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.app.registry import BUILTIN
from staterelay.integrations.alexa import ALEXA_KEY
from staterelay.ops.doctor import run_checks
from staterelay.settings import HostsSettings, LimitsSettings, ServerSettings, Settings
from tests.app.example import Example
from tests.conftest import make_account
from tests.ui.homes import Browse, sign_in_home

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Any]
COUNTS = "/example/v1/counts"


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until ``condition`` holds (the periodic task publishes every 50 ms)."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


async def test_the_route_counts_state_changes_through_the_bus_and_the_periodic_task(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """A state change made through the API reaches the integration's bus subscription; its
    periodic task publishes the count, which its own route serves as JSON."""
    example = Example()
    client: Client = await aiohttp_client(create_app(settings, integrations=(*BUILTIN, example)))
    core = client.app[CORE_KEY]
    account = await make_account(core, "alice@example.com")
    before = await client.get(COUNTS, headers=account.headers)
    assert before.status == 200
    assert await before.json() == {"household": account.tenant_id, "state_changes": 0}
    device = await client.post(
        "/api/v1/devices", json={"type": "switch", "name": "Fan"}, headers=account.headers
    )
    assert device.status == 201
    device_id = (await device.json())["id"]
    for power in ("ON", "OFF"):
        changed = await client.put(
            f"/api/v1/devices/{device_id}/state", json={"power": power}, headers=account.headers
        )
        assert changed.status == 200, await changed.text()
    await eventually(lambda: example.published.get(account.tenant_id) == 2)
    assert example.snapshots >= 2
    after = await client.get(COUNTS, headers=account.headers)
    assert await after.json() == {"household": account.tenant_id, "state_changes": 2}


async def test_its_sink_hears_of_every_change_through_the_outbox_in_order(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Its delivery policy plans a row for each state change in the change's transaction;
    the dispatcher hands the rows to its sink in commit order, and the activity log says
    they were sent."""
    example = Example()
    client: Client = await aiohttp_client(create_app(settings, integrations=(*BUILTIN, example)))
    account = await make_account(client.app[CORE_KEY], "alice@example.com")
    device = await client.post(
        "/api/v1/devices", json={"type": "dimmer", "name": "Lamp"}, headers=account.headers
    )
    device_id = (await device.json())["id"]
    levels = [10, 20, 30, 40, 50]
    for level in levels:
        changed = await client.put(
            f"/api/v1/devices/{device_id}/state",
            json={"brightness": level},
            headers=account.headers,
        )
        assert changed.status == 200, await changed.text()
    await eventually(lambda: len(example.received) >= len(levels) + 1)  # power came on too
    brightness = [p["new"] for p in example.received if p["property"] == "brightness"]
    assert brightness == levels
    assert {p["device"]["id"] for p in example.received} == {device_id}


async def test_errors_on_its_surface_are_problems_and_its_requests_are_counted(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """The surface's error renderer answers an untranslated domain error (problem+json), and
    its rate limit counts requests per credential like the API's."""
    limited = dataclasses.replace(settings, limits=LimitsSettings(api_key_per_minute=2))
    client: Client = await aiohttp_client(create_app(limited, integrations=(*BUILTIN, Example())))
    anonymous = await client.get(COUNTS)
    assert anonymous.status == 401
    assert anonymous.content_type == "application/problem+json"
    assert (await anonymous.json(content_type=None))["code"] == "not_authenticated"
    account = await make_account(client.app[CORE_KEY], "alice@example.com")
    statuses = [(await client.get(COUNTS, headers=account.headers)).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_its_surface_is_served_on_the_host_of_its_role(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """With hosts split by role, ``/example/v1/`` (role ``api``) answers on the API host
    and is nothing on the dashboard's."""
    hosts = HostsSettings(app="app.example.test", api="api.example.test")
    split = dataclasses.replace(settings, server=ServerSettings(hosts=hosts))
    client: Client = await aiohttp_client(create_app(split, integrations=(*BUILTIN, Example())))
    account = await make_account(client.app[CORE_KEY], "alice@example.com")
    on_api = await client.get(COUNTS, headers={**account.headers, "Host": "api.example.test"})
    assert on_api.status == 200
    on_app = await client.get(COUNTS, headers={**account.headers, "Host": "app.example.test"})
    assert on_app.status == 404
    assert on_app.content_type == "application/problem+json"


async def test_its_card_is_on_the_integrations_page_and_the_dashboard(
    browse: Browse, settings: Settings
) -> None:
    """The registry's cards in its order, the wide one (webhooks, with its form) below the
    others; the example's is rendered with the generic card template, and its chip on the
    dashboard links to it."""
    example = Example()
    app = create_app(settings, integrations=(*BUILTIN, example))
    home = await sign_in_home(browse, app, "sam@example.com")
    page = await home.browser.page("/dashboard/integrations")
    order = [page.find(f'id="{key}"') for key in ("alexa", "ifttt", "example", "webhooks")]
    assert -1 not in order
    assert order == sorted(order)
    assert '<h2 id="example-title">Example counter</h2>' in page
    assert "0 counted" in page
    assert "<dt>State changes</dt><dd>0</dd>" in page
    device_id = await home.add_device("switch", "Lamp")
    await home.post(f"/dashboard/devices/{device_id}/state", {"power": "ON"})
    await eventually(lambda: example.published.get(home.user.tenant_id) == 1)
    dashboard = await home.browser.page("/dashboard")
    assert 'href="/dashboard/integrations#example" data-state="linked"' in dashboard
    assert '<span class="status-name">Example</span>' in dashboard
    assert "1 counted" in dashboard


def test_doctor_runs_its_check_after_the_built_in_ones(settings: Settings) -> None:
    """``doctor`` asks every integration of the registry for its checks."""
    names = [check.name for check in run_checks(settings, None)]
    assert "example" not in names
    checks = run_checks(settings, None, integrations=(*BUILTIN, Example()))
    mine = [check for check in checks if check.name == "example"]
    assert [(c.status, c.message) for c in mine] == [
        ("OK", f"counts state changes at {settings.public_url}")
    ]
    names = [check.name for check in checks]
    assert names.index("alexa") < names.index("ifttt") < names.index("example")


async def test_integrations_share_one_outgoing_http_client(
    aiohttp_client: MakeClient, settings: Settings
) -> None:
    """Every integration of an app is built with the same outgoing HTTP client, whose
    sessions close with the app."""
    example = Example()
    app = create_app(settings, integrations=(*BUILTIN, example))
    client: Client = await aiohttp_client(app)
    (context,) = example.contexts
    assert app[ALEXA_KEY].http is context.http
    shared = context.http.shared()
    assert context.http.shared() is shared
    guarded = context.http.guarded()
    assert guarded is not shared
    await client.close()
    assert shared.closed
    assert guarded.closed


def test_two_integrations_of_one_name_are_refused(settings: Settings) -> None:
    """A registry names each integration once."""
    with pytest.raises(ValueError, match="'example'"):
        create_app(settings, integrations=(*BUILTIN, Example(), Example()))
