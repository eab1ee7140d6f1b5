"""The ``alexa`` outbox sink: ChangeReports, DoorbellPress, AddOrUpdateReport and DeleteReport.

The store writes one outbox row per change and per user with an active grant; each row
carries the device version its change made, and the rows of one endpoint and grant share an
ordering key, so the dispatcher hands them here in commit order, each only after the older
rows it must follow were sent (or given up); coalescable state changes may come together,
and take their turn here, in order. The sink builds each event from the device as it is
*when sending*, so a burst of changes collapses into few messages without waiting for more:

* a ChangeReport tells Alexa the whole state at the version it read (changed properties in
  ``payload.change``, the rest and connectivity in ``context``), so a later row whose
  version it already covered is *merged* into it: recorded as such, naming the event
  that carried it, and nothing is sent for it;
* except for Routine triggers (detection, a routine switch's power): every transition of
  those is reported, in order, with the value and time it had, because a Routine starts
  on a transition and a merged burst would swallow it; presses are never merged either,
  and no other report carries a trigger's newer value ahead of its own transition report.

Nothing is held back to wait for more changes, so Amazon's 3 s bound holds; the gateway
request itself is cut off after ``GATEWAY_TIMEOUT``, and a failed report is tried again
within about a second (the dispatcher's first retry).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from staterelay.core import Core
from staterelay.core.alexa import AlexaLink
from staterelay.core.facts import ALEXA_CHANGE_REPORT_SEEN
from staterelay.core.keyed_locks import KeyedLocks
from staterelay.core.records import Device, OutboxItem, PropertyState
from staterelay.core.sinks import SinkResult, error_code, parse_retry_after
from staterelay.integrations.alexa.directive import header
from staterelay.integrations.alexa.endpoints import AlexaEndpoint
from staterelay.integrations.alexa.lwa import (
    USER_AGENT,
    GrantGone,
    LwaError,
    Session,
    TokenKeeper,
)
from staterelay.settings import AlexaSettings

_LOGGER = logging.getLogger(__name__)

GATEWAYS: Final = {
    "NA": "https://api.amazonalexa.com/v3/events",
    "EU": "https://api.eu.amazonalexa.com/v3/events",
    "FE": "https://api.fe.amazonalexa.com/v3/events",
}
GATEWAY_TIMEOUT: Final = aiohttp.ClientTimeout(total=2.5)  # Amazon: report within 3 s
MAX_ANSWER_BYTES: Final = 65536
SENSOR_TYPES: Final = frozenset({"contact_sensor", "motion_sensor", "temperature_sensor", "button"})
UNLINK_CODES: Final = frozenset({"SKILL_DISABLED_EXCEPTION"})
_UNKNOWN: Final = object()

JSON = dict[str, Any]


def cause_for(source: str, device_type: str) -> str:
    """The ChangeReport cause of a change made through ``source`` (see docs/alexa.md).

    Alexa's own directives are voice; IFTTT applets and incoming webhooks are automations;
    a script or the CLI updating a sensor reports what a real sensor saw; the dashboard,
    the API and the CLI changing a switch or dimmer are app interactions.
    """
    if source == "alexa":
        return "VOICE_INTERACTION"
    if source in ("ifttt", "webhook"):
        return "RULE_TRIGGER"
    if device_type in SENSOR_TYPES and source != "ui":
        return "PHYSICAL_INTERACTION"
    return "APP_INTERACTION"


def gateway_url(settings: AlexaSettings, region: str) -> str:
    """The event gateway of the user's region, unless ``alexa.event_gateway_url`` overrides."""
    return settings.event_gateway_url or GATEWAYS.get(region, GATEWAYS["NA"])


def press_time(at: float) -> str:
    """DoorbellPress ``timestamp``: UTC to the second, which its schema requires."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class _Reported:
    """What Alexa was last told about one endpoint for one grant (in memory; lost on restart).

    Versions are the device's: every outbox row carries the version its change made. Each
    ``*_event`` is the outbox event id of the row whose report told Alexa that version.
    """

    __slots__ = (
        "discovered",
        "discovered_event",
        "transition",
        "transition_event",
        "values",
        "version",
        "version_event",
    )

    def __init__(self) -> None:
        self.version = 0  # the device version of the last ChangeReport's full state
        self.version_event = ""
        self.values: dict[str, Any] = {}  # the property values Alexa was told last
        self.transition = 0  # the device version of the last transition reported
        self.transition_event = ""
        self.discovered = 0  # the device version of the last AddOrUpdateReport
        self.discovered_event = ""


class _Build:
    """A message to send and what Alexa knows once the gateway accepted it."""

    __slots__ = ("message", "settle")

    def __init__(self, message: JSON, settle: Callable[[_Reported], None] | None = None) -> None:
        self.message = message
        self.settle = settle


class ChangeReportSink:
    """Delivers ``alexa`` outbox rows to the user's regional Alexa event gateway."""

    name = "alexa"

    def __init__(
        self,
        core: Core,
        settings: AlexaSettings,
        session: Session,
        tokens: TokenKeeper,
        *,
        sole_sender: bool = True,
    ) -> None:
        """``sole_sender``: this process delivers every row (SQLite's instance lock). With
        replicas, another process may have told Alexa something since, so the values this
        one remembers are never a reason to leave a property out of a report."""
        self._core = core
        self._settings = settings
        self._session = session
        self._tokens = tokens
        self._sole_sender = sole_sender
        self._reported: dict[tuple[str, str], _Reported] = {}
        self._turns: KeyedLocks[tuple[str, str]] = KeyedLocks()

    async def deliver(self, item: OutboxItem) -> SinkResult:
        """Send the event of one row (or find that a report already sent carried it).

        Rows of one endpoint and grant arrive in order (their ordering key); mergeable ones
        may arrive together, and take turns here in the order they arrived.
        """
        key = (item.destination, item.device_id or "")
        async with self._turns.hold(key):
            link = await self._core.alexa.active_link(item.tenant_id, item.destination)
            if link is None:
                self._forget_grant(item.destination)
                return SinkResult(
                    delivered=False,
                    error="not sent: Alexa is no longer linked for this user",
                    permanent=True,
                )
            return await self._deliver(link, item, key)

    async def close(self) -> None:
        """Write the last report results (the application closes the HTTP session)."""
        try:
            await self._core.alexa.flush_reports()
        except Exception:
            _LOGGER.exception("could not record the last Alexa report results")

    async def _deliver(self, link: AlexaLink, item: OutboxItem, key: tuple[str, str]) -> SinkResult:
        try:
            link = await self._tokens.access_token(link)
        except GrantGone as exc:
            self._forget_grant(link.grant_id)
            return SinkResult(delivered=False, error=f"not sent: {exc}", permanent=True)
        except LwaError as exc:
            return SinkResult(delivered=False, error=f"not sent: {exc}")
        build = await self._build(link, item, key)
        if isinstance(build, SinkResult):
            return build
        result, code = await self._post(link, build.message)
        if result.status_code == 401:
            try:
                link = await self._tokens.access_token(link, stale=link.access_token)
            except GrantGone as exc:
                self._forget_grant(link.grant_id)
                return SinkResult(delivered=False, error=f"not sent: {exc}", permanent=True)
            except LwaError as exc:
                return SinkResult(delivered=False, error=f"{result.error}; {exc}")
            _set_token(build.message, link.access_token)
            result, code = await self._post(link, build.message)
            if result.status_code == 401:
                await self._core.alexa.note_token_error(link, str(result.error))
        if result.delivered:
            if item.event_type == "state.changed":
                await self._core.facts.note(ALEXA_CHANGE_REPORT_SEEN)
            if item.event_type == "device.deleted":
                self._reported.pop(key, None)
            elif build.settle is not None:
                build.settle(self._reported.setdefault(key, _Reported()))
        elif code in UNLINK_CODES:
            await self._core.alexa.unlink(
                link.tenant_id,
                link.grant_id,
                f"{result.error}: the skill was disabled in the Alexa app",
            )
            self._forget_grant(link.grant_id)
        self._core.alexa.note_report(
            link.tenant_id, link.grant_id, result.status_code, result.error
        )
        return result

    # building -------------------------------------------------------------------------------
    async def _build(
        self, link: AlexaLink, item: OutboxItem, key: tuple[str, str]
    ) -> _Build | SinkResult:
        """The message to send for ``item``, or the row's result when nothing is to be sent."""
        if item.device_id is None:
            return SinkResult(delivered=False, error="not sent: no device", permanent=True)
        if item.event_type == "device.deleted":
            return _Build(_delete_report(item.device_id, link.access_token))
        device = await self._core.alexa.device(link, item.device_id)
        if device is None:
            return SinkResult(
                delivered=False,
                error="not sent: the device was deleted first; its DeleteReport tells Alexa",
                permanent=True,
            )
        reported = self._reported.get(key) or _Reported()
        version = _version(item)
        event_id = item.event_id
        if item.event_type in ("device.created", "device.updated"):
            if version <= reported.discovered:
                return _covered(item, reported.discovered_event)

            def discovered(state: _Reported) -> None:
                if device.version >= state.discovered:
                    state.discovered, state.discovered_event = device.version, event_id

            return _Build(_add_or_update_report(device, link.access_token), discovered)
        cause = cause_for(str(item.payload.get("source", "")), device.type)
        if item.event_type == "button.pressed":
            if device.type != "button":
                return SinkResult(
                    delivered=False, error="not sent: the device is not a button", permanent=True
                )
            return _Build(_doorbell_press(device.id, link.access_token, cause, _at(item)))
        if item.event_type == "state.changed":
            return self._change_report(device, item, reported, link.access_token, cause)
        return SinkResult(
            delivered=False, error=f"not sent: no Alexa event for {item.event_type}", permanent=True
        )

    def _change_report(
        self, device: Device, item: OutboxItem, reported: _Reported, token: str, cause: str
    ) -> _Build | SinkResult:
        endpoint = AlexaEndpoint(device)
        name = str(item.payload.get("property", ""))
        current = device.properties.get(name)
        if current is None:
            return SinkResult(
                delivered=False, error=f"not sent: the device has no {name!r}", permanent=True
            )
        version, at = _version(item), _at(item)
        transition = name in endpoint.transitions
        changed: dict[str, PropertyState] = {}
        if transition:
            if version <= reported.transition:
                return _covered(item, reported.transition_event)  # reported before a restart
            changed[name] = PropertyState(item.payload.get("new", current.value), at)
        else:
            if version <= reported.version:
                return _covered(item, reported.version_event)
            if reported.values.get(name, _UNKNOWN) != current.value:
                changed[name] = current
        for other, state in device.properties.items():
            if other in changed or other == name or other in endpoint.transitions:
                continue
            known = reported.values.get(other, _UNKNOWN)
            if (known is _UNKNOWN and state.changed_at >= at) or (
                known is not _UNKNOWN and known != state.value
            ):
                changed[other] = state
        now = self._core.clock()
        values = {**device.properties, **changed}
        properties = endpoint.properties(now, values, only=changed) if changed else []
        if not properties:
            # Alexa already has these values (a change and its undoing met in one report).
            return _covered(item, reported.version_event)
        # A trigger's newer value never rides ahead of its own transition report: the
        # context of any other report leaves the Routine triggers out.
        hidden = changed.keys() | (set() if transition else endpoint.transitions)
        message: JSON = {
            "event": {
                "header": header("Alexa", "ChangeReport"),
                "endpoint": {"scope": _scope(token), "endpointId": device.id},
                "payload": {"change": {"cause": {"type": cause}, "properties": properties}},
            },
            "context": {"properties": endpoint.properties(now, without=hidden)},
        }
        event_id = item.event_id

        sole_sender = self._sole_sender

        def settle(state: _Reported) -> None:
            if not sole_sender:
                # Versions only grow and a key's rows go in order, so what was sent here is
                # still "at least this new"; the values themselves may be out of date.
                if transition and version >= state.transition:
                    state.transition, state.transition_event = version, event_id
                elif not transition and device.version >= state.version:
                    state.version, state.version_event = device.version, event_id
                return
            if transition:
                if version >= state.transition:
                    state.transition, state.transition_event = version, event_id
                state.values.update({key: prop.value for key, prop in changed.items()})
            else:
                if device.version >= state.version:
                    state.version, state.version_event = device.version, event_id
                state.values.update(
                    {
                        key: prop.value
                        for key, prop in device.properties.items()
                        if key not in endpoint.transitions
                    }
                )

        return _Build(message, settle)

    # sending --------------------------------------------------------------------------------
    async def _post(self, link: AlexaLink, message: JSON) -> tuple[SinkResult, str | None]:
        url = gateway_url(self._settings, link.region)
        try:
            async with self._session().post(
                url,
                data=json.dumps(message, separators=(",", ":")),
                headers={
                    "Authorization": f"Bearer {link.access_token}",
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                },
                timeout=GATEWAY_TIMEOUT,
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES)
                status = response.status
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self._core.clock()
                )
        except TimeoutError:
            return SinkResult(delivered=False, error="Alexa event gateway timed out"), None
        except aiohttp.ClientError as exc:
            error = f"Alexa event gateway unreachable: {type(exc).__name__}"
            return SinkResult(delivered=False, error=error), None
        if 200 <= status < 300:
            return SinkResult(delivered=True, status_code=status), None
        code = error_code(raw, "payload", "code")
        error = f"Alexa {status} {code}" if code else f"Alexa {status}"
        if status == 429 or status >= 500:
            return SinkResult(
                delivered=False, status_code=status, error=error, retry_after=retry_after
            ), code
        if status == 401:
            return SinkResult(delivered=False, status_code=status, error=error), code
        # 400, 403, 404, 413: sending the same message again cannot succeed.
        return SinkResult(delivered=False, status_code=status, error=error, permanent=True), code

    def _forget_grant(self, grant_id: str) -> None:
        for key in [key for key in self._reported if key[0] == grant_id]:
            del self._reported[key]
        self._tokens.forget(grant_id)


def _covered(item: OutboxItem, event_id: str) -> SinkResult:
    """The row's change went out with the report of ``event_id`` (or, after a restart
    forgot which, with the one sent for this very row)."""
    return SinkResult.merged(event_id or item.event_id)


def _version(item: OutboxItem) -> int:
    version = item.payload.get("device_version")
    return version if isinstance(version, int) and not isinstance(version, bool) else 1 << 62


def _at(item: OutboxItem) -> float:
    at = item.payload.get("at")
    return float(at) if isinstance(at, int | float) else item.created_at


def _scope(token: str) -> JSON:
    return {"type": "BearerToken", "token": token}


def _set_token(message: JSON, token: str) -> None:
    event = message["event"]
    if "endpoint" in event:
        event["endpoint"]["scope"] = _scope(token)
    if "scope" in event["payload"]:
        event["payload"]["scope"] = _scope(token)


def _add_or_update_report(device: Device, token: str) -> JSON:
    return {
        "event": {
            "header": header("Alexa.Discovery", "AddOrUpdateReport"),
            "payload": {"endpoints": [AlexaEndpoint(device).discovery()], "scope": _scope(token)},
        }
    }


def _delete_report(device_id: str, token: str) -> JSON:
    # Not in Amazon's schema; shaped as the Alexa.Discovery documentation describes it.
    return {
        "event": {
            "header": header("Alexa.Discovery", "DeleteReport"),
            "payload": {"endpoints": [{"endpointId": device_id}], "scope": _scope(token)},
        }
    }


def _doorbell_press(device_id: str, token: str, cause: str, at: float) -> JSON:
    return {
        "event": {
            "header": header("Alexa.DoorbellEventSource", "DoorbellPress"),
            "endpoint": {"scope": _scope(token), "endpointId": device_id},
            "payload": {"cause": {"type": cause}, "timestamp": press_time(at)},
        },
        "context": {},
    }
