"""IftttService: trigger timelines, trigger identities, field options, actions and upkeep.

Timelines are filled by the store's fan-out inside each change's transaction, so a poll only
reads one index range. A poll also records its trigger identity (IFTTT's name for one user's
trigger with one set of fields); to keep polls cheap the identity is written only when it
is new, changed or has not been written for ``IDENTITY_TOUCH_SECONDS``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from staterelay.core.clock import Clock
from staterelay.core.devices import DeviceService, require
from staterelay.core.errors import (
    BadRequest,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    StateRelayError,
    Unavailable,
)
from staterelay.core.ifttt_catalog import (
    POWER_WORDS,
    ActionSpec,
    TriggerFields,
    TriggerSpec,
    action_spec,
    parse_brightness,
    parse_detection,
    parse_device,
    parse_direction,
    parse_identity,
    parse_limit,
    parse_number,
    parse_power,
    parse_trigger_fields,
    trigger_spec,
    user_timezone,
)
from staterelay.core.ifttt_setup import IftttTestSetup
from staterelay.core.keyed_locks import KeyedLocks
from staterelay.core.oauth import OAuthService
from staterelay.core.records import Device, Principal
from staterelay.core.records.ifttt import (
    REALTIME_BATCH,
    REALTIME_SINK,
    IftttPruned,
    Threshold,
    TriggerIdentity,
)
from staterelay.core.storage import Store
from staterelay.core.users import UserService
from staterelay.settings import IftttSettings

_LOGGER = logging.getLogger(__name__)

DAY: Final = 86400.0
SOURCE: Final = "ifttt"
IDENTITY_TOUCH_SECONDS: Final = 600.0
THRESHOLD_TOUCH_SECONDS: Final = DAY
REQUEST_ID_KEEP_SECONDS: Final = DAY
REQUEST_ID_MAX: Final = 128
CACHE_SIZE: Final = 10_000
DEVICE_PAGE: Final = 300
TIMELINE_KEEP: Final = 50
"""Events of a trigger timeline kept whatever their age: IFTTT polls up to 50 at a time and
expects what it saw to stay (retention applies only to older ones)."""


class ActionSkipped(StateRelayError):
    """An action that can never succeed with these fields; IFTTT should skip it, not retry."""

    status = 400
    code = "skip"
    title = "Action skipped"


class ServiceKeyMissing(Unavailable):
    """No IFTTT service key is configured, so IFTTT's service calls cannot be verified."""

    code = "ifttt_not_configured"
    title = "IFTTT is not set up"


class IftttService:
    """Everything the IFTTT adapter asks of the domain."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        devices: DeviceService,
        users: UserService,
        oauth: OAuthService,
        settings: IftttSettings,
        *,
        public_url: str,
    ) -> None:
        self._store = store
        self._clock = clock
        self._devices = devices
        self._users = users
        self.settings = settings
        self.public_url = public_url.rstrip("/")
        key = (settings.service_key or "").strip()
        self._service_key = key.encode("utf-8") if key else None
        self._identities: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        self._thresholds: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._action_locks: KeyedLocks[tuple[str, str, str, str]] = KeyedLocks()
        self._test_setup = IftttTestSetup(store, clock, devices, users, oauth, settings)

    # service key and status ------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        """True when a (non-empty) service key is set."""
        return self._service_key is not None

    def check_service_key(self, presented: str | None) -> None:
        """Accept only this server's service key, compared in constant time.

        ``ServiceKeyMissing`` (503) when none is configured: an empty key is never accepted.
        """
        if self._service_key is None:
            raise ServiceKeyMissing(
                "IFTTT is not set up on this server: set ifttt.service_key to the service key "
                "shown on platform.ifttt.com"
            )
        if not presented:
            raise NotAuthenticated("the IFTTT-Service-Key header is missing")
        if not hmac.compare_digest(presented.encode("utf-8"), self._service_key):
            raise NotAuthenticated("the IFTTT-Service-Key is not this service's key")

    async def start(self) -> None:
        """Tell the store's fan-out whether, and how fast, to queue Realtime notifications."""
        await self._store.configure_ifttt_realtime(
            enabled=self.configured,
            debounce_seconds=self.settings.realtime_debounce_seconds,
            now=self._clock(),
        )

    async def ready(self) -> bool:
        """True when the database can serve triggers and actions."""
        return await self._store.ready()

    async def setup_test(self) -> dict[str, Any]:
        """``test/setup``: a test user with devices and events, a real token, samples."""
        return await self._test_setup.run()

    # user info -------------------------------------------------------------------------------
    async def user_info(self, principal: Principal) -> dict[str, str]:
        """IFTTT's ``user/info``: a permanent id (the user id), a name and a URL."""
        try:
            user = await self._users.get(principal.tenant_id, principal.user_id)
        except NotFound:
            raise NotAuthenticated("the user of this token no longer exists") from None
        return {"name": user.email, "id": user.id, "url": f"{self.public_url}/"}

    # triggers --------------------------------------------------------------------------------
    async def poll(self, principal: Principal, slug: str, body: Mapping[str, Any]) -> list[Any]:
        """A trigger's timeline, newest first, as IFTTT items (ingredients and ``meta``)."""
        require(principal, "read")
        spec = trigger_spec(slug)
        fields = parse_trigger_fields(spec, body.get("triggerFields"))
        limit = parse_limit(body.get("limit"))
        identity = parse_identity(body.get("trigger_identity"))
        if fields.threshold is not None:
            await self._track_threshold(principal.tenant_id, fields.device_id, fields.threshold)
        if identity is not None:
            await self._remember_identity(principal, spec, fields, identity)
        if limit == 0:
            return []
        events = await self._store.list_ifttt_events(
            principal.tenant_id, fields.device_id, spec.kind, fields.variant, limit=limit
        )
        tz = user_timezone(body.get("user"))
        items: list[Any] = []
        for event in events:
            item: dict[str, Any] = dict(spec.render(event, fields, tz))
            item["meta"] = {"id": event.uid, "timestamp": int(event.occurred_at)}
            items.append(item)
        return items

    async def forget_identity(self, principal: Principal, slug: str, identity: str) -> None:
        """IFTTT's last Applet with this identity is gone; idempotent."""
        trigger_spec(slug)
        await self._store.delete_ifttt_identity(
            principal.tenant_id, principal.user_id, identity, self._clock()
        )
        self._identities.pop((principal.tenant_id, principal.user_id, identity), None)

    async def forget_user(self, tenant_id: str, user_id: str) -> int:
        """IFTTT was unlinked for a user: their trigger identities go, and with them every
        Realtime notification for them (queued ones too); returns identities dropped."""
        forgotten = await self._store.forget_ifttt_user(tenant_id, user_id, self._clock())
        for key in [key for key in self._identities if key[:2] == (tenant_id, user_id)]:
            del self._identities[key]
        if forgotten:
            _LOGGER.info(
                "IFTTT unlinked for user %s: %d trigger identities dropped", user_id, forgotten
            )
        return forgotten

    async def identities(self, principal: Principal) -> Sequence[TriggerIdentity]:
        """The principal's user's trigger identities, deleted ones included."""
        require(principal, "read")
        return await self._store.list_ifttt_identities(principal.tenant_id, principal.user_id)

    async def _remember_identity(
        self, principal: Principal, spec: TriggerSpec, fields: TriggerFields, identity: str
    ) -> None:
        key = (principal.tenant_id, principal.user_id, identity)
        signature = json.dumps([spec.slug, fields.as_strings()], sort_keys=True)
        now = self._clock()
        known = self._identities.get(key)
        if known is not None and known[0] == signature and now - known[1] < IDENTITY_TOUCH_SECONDS:
            return
        await self._store.save_ifttt_identity(
            TriggerIdentity(
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
                identity=identity,
                trigger=spec.slug,
                fields=fields.as_strings(),
                device_id=fields.device_id,
                kind=spec.kind,
                threshold=fields.threshold,
                created_at=now,
                last_polled_at=now,
            )
        )
        _remember(self._identities, key, (signature, now))

    async def _track_threshold(self, tenant_id: str, device_id: str, threshold: Threshold) -> None:
        key = (tenant_id, device_id, threshold.variant)
        now = self._clock()
        known = self._thresholds.get(key)
        if known is not None and now - known < THRESHOLD_TOUCH_SECONDS:
            return
        limit = self.settings.max_thresholds_per_sensor
        backfilled = await self._store.track_ifttt_threshold(
            tenant_id, device_id, threshold, now, limit=limit
        )
        if backfilled is None:
            raise BadRequest(
                f"this sensor already has {limit} different thresholds in Applets; use one of"
                " those or remove Applets with thresholds no longer needed",
                field="threshold",
            )
        if backfilled:
            _LOGGER.info("threshold %s of %s: %d past crossings", key[2], device_id, backfilled)
        _remember(self._thresholds, key, now)

    # field options and validation ------------------------------------------------------------
    async def options(
        self, principal: Principal, step: str, slug: str, field: str
    ) -> list[dict[str, str]]:
        """A dropdown's choices: the user's devices of fitting types, or fixed words."""
        require(principal, "read")
        spec: TriggerSpec | ActionSpec = (
            trigger_spec(slug) if step == "triggers" else action_spec(slug)
        )
        if field not in spec.fields:
            raise NotFound(f"{slug} has no field called {field!r}")
        if field == "device":
            devices = await self._devices_of(principal, spec.device_types)
            return [{"label": device_label(device), "value": device.id} for device in devices]
        if field == "direction":
            return [
                {"label": "rises above", "value": "above"},
                {"label": "falls below", "value": "below"},
            ]
        if field == "power":
            return [{"label": word, "value": word} for word in POWER_WORDS]
        raise NotFound(f"{field} has no options; it is typed in")

    async def validate_field(
        self, principal: Principal, slug: str, field: str, value: Any
    ) -> dict[str, Any]:
        """Dynamic validation of one trigger field: always an answer, never an error."""
        require(principal, "read")
        spec = trigger_spec(slug)
        if field not in spec.fields:
            raise NotFound(f"{slug} has no field called {field!r}")
        return await self._check_field(principal, spec, field, value)

    async def validate_fields(
        self, principal: Principal, slug: str, values: Any
    ) -> dict[str, dict[str, Any]]:
        """Contextual validation: every field of a trigger at once."""
        require(principal, "read")
        spec = trigger_spec(slug)
        if not isinstance(values, Mapping):
            raise BadRequest("values must be an object of field values", field="values")
        return {
            field: await self._check_field(principal, spec, field, values.get(field))
            for field in spec.fields
        }

    async def _check_field(
        self, principal: Principal, spec: TriggerSpec, field: str, value: Any
    ) -> dict[str, Any]:
        try:
            if field == "device":
                device = await self._devices.get(principal, parse_device(value))
                if device.type not in spec.device_types:
                    return _invalid(f"{device.name} is a {device.type.replace('_', ' ')}")
            elif field == "direction":
                parse_direction(value)
            elif field == "threshold":
                parse_number(value, field="threshold")
        except NotFound:
            return _invalid("there is no such device")
        except BadRequest as error:
            return _invalid(error.detail)
        return {"valid": True}

    async def _devices_of(self, principal: Principal, types: Sequence[str]) -> list[Device]:
        found: list[Device] = []
        cursor: str | None = None
        while True:
            page = await self._devices.list(principal, cursor=cursor, limit=DEVICE_PAGE)
            found.extend(device for device in page.items if device.type in types)
            cursor = page.next_cursor
            if cursor is None:
                return sorted(found, key=lambda device: device.name.casefold())

    # actions ---------------------------------------------------------------------------------
    async def run_action(
        self,
        principal: Principal,
        slug: str,
        body: Mapping[str, Any],
        *,
        request_id: str | None = None,
    ) -> dict[str, str]:
        """Run an action once per IFTTT request id; ``ActionSkipped`` when it never can."""
        require(principal, "write")
        spec = action_spec(slug)
        fields = body.get("actionFields")
        if fields is None:
            raise BadRequest("actionFields is missing", field="actionFields")
        if not isinstance(fields, Mapping):
            raise BadRequest("actionFields must be an object", field="actionFields")
        cause = _cause(spec, body.get("ifttt_source"))
        if request_id is None or not 0 < len(request_id) <= REQUEST_ID_MAX:
            return {"id": await self._perform(principal, spec, fields, cause)}
        key = (principal.tenant_id, principal.user_id, spec.slug, request_id)
        # A retry that arrives while the first attempt still runs waits for it here; the
        # stored request id answers retries after that, across restarts too.
        async with self._action_locks.hold(key):
            done = await self._store.find_ifttt_action(*key)
            if done is not None:
                return {"id": done}
            result = await self._perform(principal, spec, fields, cause)
            await self._store.record_ifttt_action(*key, result, self._clock())
            return {"id": result}

    async def _perform(
        self, principal: Principal, spec: ActionSpec, fields: Mapping[str, Any], cause: str
    ) -> str:
        try:
            device = await self._devices.get(principal, parse_device(fields.get("device")))
            if device.type not in spec.device_types:
                wanted = " or ".join(t.replace("_", " ") for t in spec.device_types)
                raise ActionSkipped(f"{device.name} is not a {wanted}")
            changed = await self._apply(principal, spec, device, fields, cause)
        except NotFound:
            raise ActionSkipped("the device no longer exists") from None
        except (BadRequest, InvalidInput) as error:
            raise ActionSkipped(error.detail) from None
        return f"{changed.id}:{changed.version}"

    async def _apply(
        self,
        principal: Principal,
        spec: ActionSpec,
        device: Device,
        fields: Mapping[str, Any],
        cause: str,
    ) -> Device:
        devices = self._devices
        if spec.slug == "press_button":
            return await devices.press(principal, device.id, source=SOURCE, cause=cause)
        values: dict[str, Any] | Callable[[Device], dict[str, Any]]
        if spec.slug == "set_power":
            word = parse_power(fields.get("power"))
            # A toggle reads the power inside the write, so ten at once flip it ten times.
            values = _toggled if word == "toggle" else {"power": word.upper()}
        elif spec.slug == "set_brightness":
            values = {"brightness": parse_brightness(fields.get("brightness"))}
        elif device.type == "temperature_sensor":
            values = {"temperature": parse_number(fields.get("value"), field="value")}
        else:
            values = {"detection": parse_detection(fields.get("value"))}
        return await devices.set_state(principal, device.id, values, source=SOURCE, cause=cause)

    # upkeep ----------------------------------------------------------------------------------
    async def prune(self) -> IftttPruned:
        """Drop timeline events past retention, unused identities and old request ids."""
        now = self._clock()
        retention = self.settings.event_retention_days * DAY
        pruned = await self._store.prune_ifttt(
            events_before=now - retention,
            keep_events=TIMELINE_KEEP,
            identities_before=now - retention,
            requests_before=now - REQUEST_ID_KEEP_SECONDS,
        )
        if pruned.identities or pruned.thresholds:
            self._identities.clear()
            self._thresholds.clear()
        return pruned


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


def _toggled(device: Device) -> dict[str, Any]:
    current = device.properties.get("power")
    return {"power": "OFF" if current is not None and current.value == "ON" else "ON"}


def _invalid(message: str) -> dict[str, Any]:
    text = message[:1].upper() + message[1:]
    return {"valid": False, "message": text}


def _cause(spec: ActionSpec, source: Any) -> str:
    applet = source.get("id") if isinstance(source, Mapping) else None
    if isinstance(applet, str | int) and not isinstance(applet, bool) and str(applet).isprintable():
        return f"IFTTT applet {str(applet)[:64]} ({spec.slug})"
    return f"IFTTT action {spec.slug}"


__all__ = [
    "REALTIME_BATCH",
    "REALTIME_SINK",
    "ActionSkipped",
    "IftttService",
    "ServiceKeyMissing",
]


def device_label(device: Device) -> str:
    """A device as IFTTT's dropdowns list it: ``Movie mode (Living room)``."""
    return f"{device.name} ({device.room})" if device.room else device.name
