"""IFTTT's endpoint tests: a test user, its devices and events, a real token and samples.

IFTTT's tool first calls ``test/setup``, then polls every trigger (expecting at least three
events each), runs every action for real and checks that the skipping samples are skipped.
The test user lives in a household of its own, so nothing appears in anyone's dashboard or
Alexa account. Running the setup again reuses what exists and only tops events up.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import Any, Final

from staterelay.core.clock import Clock
from staterelay.core.devices import DeviceService
from staterelay.core.errors import Conflict, Unavailable
from staterelay.core.ids import new_id
from staterelay.core.oauth import NewCode, OAuthClient, OAuthService
from staterelay.core.records import Device, Principal, Tenant, User
from staterelay.core.records.ifttt import (
    BRIGHTNESS_KIND,
    POWER_KIND,
    PRESS_KIND,
    SENSOR_KIND,
    Threshold,
)
from staterelay.core.storage import Store
from staterelay.core.users import UserService
from staterelay.settings import IftttSettings

TEST_EMAIL: Final = "ifttt-endpoint-tests@staterelay.invalid"
TEST_MARKER: Final = "ifttt_test_user"
"""The instance marker naming the test account (``tenant:user``): it is recognized by this,
never by its e-mail address, which an account someone registered could also carry."""
TEST_TENANT: Final = "IFTTT endpoint tests"
DELETED_DEVICE: Final = "dev_deleted_for_ifttt_tests"
SAMPLE_THRESHOLD: Final = Threshold("above", 20.0)
MIN_EVENTS: Final = 3
SOURCE: Final = "ifttt"
CAUSE: Final = "IFTTT endpoint test setup"
TEST_DEVICES: Final = {
    "switch": "Test switch",
    "dimmer": "Test dimmer",
    "temperature_sensor": "Test thermometer",
    "button": "Test button",
}


class IftttTestSetup:
    """Prepare (idempotently) what IFTTT's endpoint tests need."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        devices: DeviceService,
        users: UserService,
        oauth: OAuthService,
        settings: IftttSettings,
    ) -> None:
        self._store = store
        self._clock = clock
        self._devices = devices
        self._users = users
        self._oauth = oauth
        self._settings = settings
        self._lock = asyncio.Lock()

    async def run(self) -> dict[str, Any]:
        """The ``data`` of a ``test/setup`` answer: ``accessToken`` and ``samples``."""
        async with self._lock:
            client = await self._client()
            user = await self._test_user()
            principal = Principal(
                tenant_id=user.tenant_id,
                user_id=user.id,
                scopes=frozenset({"read", "write"}),
                credential="system",
                credential_id="ifttt-test-setup",
            )
            devices = await self._test_devices(principal)
            # Linked first: only a household linked to IFTTT keeps trigger timelines.
            token = await self._token(user, client)
            await self._top_up_events(principal, devices)
        return {"accessToken": token, "samples": samples(devices)}

    async def _client(self) -> OAuthClient:
        wanted = self._settings.client_id
        if wanted:
            client = await self._oauth.get_client(wanted)
            if client is None:
                raise Unavailable(f"ifttt.client_id names no OAuth client ({wanted!r})")
            return client
        clients = [c for c in await self._oauth.list_clients() if "ifttt" in c.scopes]
        if not clients:
            raise Unavailable(
                "no OAuth client for IFTTT yet: run "
                "'staterelay client create --preset ifttt --service-id <your service id>'"
            )
        if len(clients) > 1:
            raise Unavailable(
                "several OAuth clients have the ifttt scope: set ifttt.client_id to IFTTT's"
            )
        return clients[0]

    async def _test_user(self) -> User:
        marked = await self._store.get_instance_marker(TEST_MARKER)
        if marked is not None:
            tenant_id, _, user_id = marked.partition(":")
            user = await self._store.get_user(tenant_id, user_id)
            if user is not None:
                return user
        # The household must exist first, or the test household would become it.
        await self._users.household()
        tenant = await self._store.create_tenant(
            Tenant(id=new_id("ten"), name=TEST_TENANT, created_at=self._clock())
        )
        try:
            user = await self._users.create(email=TEST_EMAIL, tenant_id=tenant.id, internal=True)
        except Conflict:
            # An account with the address exists that this instance did not make for IFTTT
            # (registered before reserved domains were refused): it is left alone.
            address = TEST_EMAIL.replace("@", f"-{secrets.token_hex(5)}@")
            user = await self._users.create(email=address, tenant_id=tenant.id, internal=True)
        kept = await self._store.set_instance_marker(
            TEST_MARKER, f"{tenant.id}:{user.id}", self._clock(), replacing=marked
        )
        if kept != f"{tenant.id}:{user.id}":
            tenant_id, _, user_id = kept.partition(":")
            winner = await self._store.get_user(tenant_id, user_id)
            if winner is not None:
                return winner  # another replica set the account up at the same moment
        return user

    async def _test_devices(self, principal: Principal) -> dict[str, Device]:
        existing: dict[str, Device] = {}
        cursor: str | None = None
        while True:
            page = await self._devices.list(principal, cursor=cursor, limit=100)
            existing.update((device.name, device) for device in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        found: dict[str, Device] = {}
        for kind, name in TEST_DEVICES.items():
            device = existing.get(name)
            if device is None or device.type != kind:
                if device is not None:
                    await self._devices.delete(principal, device.id, source=SOURCE)
                device = await self._devices.create(principal, type=kind, name=name, source=SOURCE)
            found[kind] = device
        return found

    async def _count(self, device: Device, kind: str, variant: str = "") -> int:
        events = await self._store.list_ifttt_events(
            device.tenant_id, device.id, kind, variant, limit=MIN_EVENTS
        )
        return len(events)

    async def _top_up_events(self, principal: Principal, devices: dict[str, Device]) -> None:
        switch, dimmer = devices["switch"], devices["dimmer"]
        thermometer, button = devices["temperature_sensor"], devices["button"]
        for _ in range(MIN_EVENTS - await self._count(switch, POWER_KIND)):
            current = (await self._devices.get(principal, switch.id)).properties["power"].value
            await self._set(principal, switch, {"power": "OFF" if current == "ON" else "ON"})
        levels = itertools.cycle((25, 50, 75))
        for _ in range(MIN_EVENTS - await self._count(dimmer, BRIGHTNESS_KIND)):
            current = (await self._devices.get(principal, dimmer.id)).properties["brightness"]
            level = next(levels)
            if level == current.value:
                level = next(levels)
            await self._set(principal, dimmer, {"brightness": level})
        await self._store.track_ifttt_threshold(
            thermometer.tenant_id,
            thermometer.id,
            SAMPLE_THRESHOLD,
            self._clock(),
            limit=self._settings.max_thresholds_per_sensor,
        )
        crossings = await self._count(thermometer, SENSOR_KIND, SAMPLE_THRESHOLD.variant)
        readings = await self._count(thermometer, SENSOR_KIND)
        for _ in range(max(MIN_EVENTS - crossings, (MIN_EVENTS - readings + 1) // 2)):
            # Below, then above: one crossing of the sample threshold, two readings.
            await self._set(principal, thermometer, {"temperature": 18.0})
            await self._set(principal, thermometer, {"temperature": 22.0})
        for _ in range(MIN_EVENTS - await self._count(button, PRESS_KIND)):
            await self._devices.press(principal, button.id, source=SOURCE, cause=CAUSE)

    async def _set(self, principal: Principal, device: Device, values: dict[str, Any]) -> None:
        await self._devices.set_state(principal, device.id, values, source=SOURCE, cause=CAUSE)

    async def _token(self, user: User, client: OAuthClient) -> str:
        """A real access token of ``client`` for the test user; older test links are revoked."""
        for app in await self._oauth.list_user_grants(user.tenant_id, user.id):
            if app.client_id == client.id:
                await self._oauth.revoke_user_grant(user.tenant_id, user.id, app.grant_id)
        code = self._oauth.new_code()
        record = await self._oauth.save_code(
            code,
            NewCode(
                client_id=client.id,
                tenant_id=user.tenant_id,
                user_id=user.id,
                redirect_uri=client.redirect_uris[0],
                redirect_uri_given=True,
                scopes=client.scopes,
            ),
        )
        tokens = self._oauth.issue_tokens(client.scopes)
        if not await self._oauth.exchange_code(record, tokens):
            raise Unavailable("could not issue an access token for the test user; try again")
        return tokens.access_token


def samples(devices: dict[str, Device]) -> dict[str, Any]:
    """Inputs for every trigger, validation, action and skipped action."""
    switch, dimmer = devices["switch"].id, devices["dimmer"].id
    thermometer, button = devices["temperature_sensor"].id, devices["button"].id
    threshold = f"{SAMPLE_THRESHOLD.value:g}"
    return {
        "triggers": {
            "power_changed": {"device": switch},
            "brightness_changed": {"device": dimmer},
            "sensor_value_changed": {"device": thermometer},
            "temperature_crossed_threshold": {
                "device": thermometer,
                "direction": SAMPLE_THRESHOLD.direction,
                "threshold": threshold,
            },
            "button_pressed": {"device": button},
        },
        "triggerFieldValidations": {
            "temperature_crossed_threshold": {
                "direction": {"valid": "above", "invalid": "sideways"},
                "threshold": {"valid": threshold, "invalid": "warm"},
            }
        },
        "actions": {
            "set_power": {"device": switch, "power": "on"},
            "set_brightness": {"device": dimmer, "brightness": "60"},
            "set_sensor_value": {"device": thermometer, "value": "21.5"},
            "press_button": {"device": button},
        },
        "actionRecordSkipping": {
            "set_power": {"device": DELETED_DEVICE, "power": "on"},
            "set_brightness": {"device": dimmer, "brightness": "150"},
            "set_sensor_value": {"device": thermometer, "value": "hot"},
            "press_button": {"device": DELETED_DEVICE},
        },
    }
