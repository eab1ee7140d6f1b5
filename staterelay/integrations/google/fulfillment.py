"""``POST /google/fulfillment``: SYNC, QUERY, EXECUTE and DISCONNECT, answered as Google expects.

The caller is Google with the user's StateRelay access token (the ``google`` OAuth client's;
personal API keys and other apps' tokens are refused). A missing, unknown, revoked or expired
token is HTTP 401, so Google refreshes and tries again; every other answer is HTTP 200 with
the intent's response, errors per device where they concern a device (``deviceNotFound``,
``functionNotSupported``, ``valueOutOfRange`` ...) and ``protocolError`` in the payload for a
request that is not one Google sends. ``requestId`` is echoed unchanged (it is opaque: Google's
own samples are not UUIDs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from staterelay.core import Core
from staterelay.core.errors import (
    Conflict,
    NotAuthenticated,
    NotFound,
    PlanLimit,
    RequestTimeout,
    StateRelayError,
    ValueOutOfRange,
)
from staterelay.core.oauth_clients import is_google_client
from staterelay.core.records import Device, Principal
from staterelay.integrations.google.devices import (
    JSON,
    CommandError,
    command_change,
    query_entry,
    states,
    sync_entry,
)
from staterelay.integrations.google.links import UNLINKED_BY_GOOGLE, GoogleLinks
from staterelay.jsoncodec import TooDeep, decode_lenient, encode

_LOGGER = logging.getLogger(__name__)

PATH: Final = "/google/fulfillment"
SOURCE: Final = "google"
INTENT_PREFIX: Final = "action.devices."
PAGE: Final = 500


class ProtocolError(Exception):
    """The request is not one Google sends."""


class Fulfillment:
    """Authenticates Google's calls and answers the four intents."""

    def __init__(self, core: Core, links: GoogleLinks) -> None:
        self._core = core
        self._links = links
        self._google_clients: dict[str, bool] = {}

    async def post(self, request: web.Request) -> web.Response:
        """One intent request in, one response out."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("a bearer token is required")
            principal = await self._core.auth.authenticate_linked_app(token.strip())
            if not await self._is_google(principal.client_id):
                raise NotAuthenticated("the token was not issued to Google Home's client")
        except NotAuthenticated as exc:
            return _json(
                {"error": "invalid_token", "error_description": exc.detail},
                401,
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        try:
            raw = await request.read()
        except RequestTimeout:
            return _json(_error_payload("", "protocolError", "the body did not arrive"), 200)
        except web.HTTPRequestEntityTooLarge:
            too_large = f"the body is larger than {request.client_max_size} bytes"
            return _json(_error_payload("", "protocolError", too_large), 200)
        try:
            body = decode_lenient(raw)
        except TooDeep as exc:
            return _json(_error_payload("", "protocolError", str(exc)), 200)
        except ValueError:
            return _json(_error_payload("", "protocolError", "the body is not JSON"), 200)
        return _json(await self.handle(body, principal), 200)

    async def handle(self, body: Any, principal: Principal) -> JSON:
        """The response to a parsed request body."""
        request_id = body.get("requestId") if isinstance(body, dict) else None
        request_id = request_id if isinstance(request_id, str) else ""
        try:
            intent, payload = _parse(body)
            if intent != "DISCONNECT":
                # Hosted plans: a plan without Google Home leaves the devices offline there.
                await self._core.billing.check_integration(principal.tenant_id, "google")
            if intent == "SYNC":
                return {"requestId": request_id, "payload": await self._sync(principal)}
            if intent == "QUERY":
                return {"requestId": request_id, "payload": await self._query(principal, payload)}
            if intent == "EXECUTE":
                return {
                    "requestId": request_id,
                    "payload": await self._execute(principal, payload),
                }
            if intent == "DISCONNECT":
                await self._disconnect(principal)
                return {}
            raise ProtocolError(f"{INTENT_PREFIX}{intent} is not an intent StateRelay serves")
        except ProtocolError as exc:
            return _error_payload(request_id, "protocolError", str(exc))
        except PlanLimit as exc:
            return _error_payload(request_id, "deviceOffline", exc.detail)
        except StateRelayError as exc:
            _LOGGER.warning("Google intent failed: %s", exc.detail)
            return _error_payload(request_id, "transientError", exc.detail)

    async def _is_google(self, client_id: str | None) -> bool:
        if client_id is None:
            return False
        known = self._google_clients.get(client_id)
        if known is None:
            client = await self._core.oauth.get_client(client_id)
            known = client is not None and is_google_client(client)
            if client is not None:
                self._google_clients[client_id] = known
        return known

    # intents -------------------------------------------------------------------------------
    async def _sync(self, principal: Principal) -> JSON:
        devices: list[JSON] = []
        cursor: str | None = None
        while True:
            page = await self._core.devices.list(principal, cursor=cursor, limit=PAGE)
            devices.extend(sync_entry(device) for device in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        await self._links.synced(principal.tenant_id, principal.user_id, principal.credential_id)
        return {"agentUserId": principal.user_id, "devices": devices}

    async def _query(self, principal: Principal, payload: Mapping[str, Any]) -> JSON:
        wanted = payload.get("devices")
        if not isinstance(wanted, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("id"), str) for entry in wanted
        ):
            raise ProtocolError("QUERY needs payload.devices, a list of {id}")
        answer: dict[str, JSON] = {}
        for entry in wanted:
            device_id = entry["id"]
            device = await self._device(principal, device_id)
            if device is None:
                answer[device_id] = {
                    "online": False,
                    "status": "ERROR",
                    "errorCode": "deviceNotFound",
                }
            elif await self._core.billing.is_suspended(principal.tenant_id, device_id):
                # Suspended by the household's plan: offline, never gone (automations stay).
                answer[device_id] = {**query_entry(device), "online": False, "status": "OFFLINE"}
            else:
                answer[device_id] = query_entry(device)
        return {"devices": answer}

    async def _execute(self, principal: Principal, payload: Mapping[str, Any]) -> JSON:
        commands = payload.get("commands")
        if not isinstance(commands, list) or not commands:
            raise ProtocolError("EXECUTE needs payload.commands, a list")
        results: list[JSON] = []
        for command in commands:
            if not isinstance(command, dict):
                raise ProtocolError("each command is an object with devices and execution")
            targets, executions = command.get("devices"), command.get("execution")
            if (
                not isinstance(targets, list)
                or not all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in targets)
                or not isinstance(executions, list)
                or not executions
                or not all(
                    isinstance(e, dict) and isinstance(e.get("command"), str) for e in executions
                )
            ):
                raise ProtocolError("each command needs devices [{id}] and execution [{command}]")
            for target in targets:
                results.append(await self._run(principal, target["id"], executions))
        return {"commands": results}

    async def _run(
        self, principal: Principal, device_id: str, executions: Sequence[Mapping[str, Any]]
    ) -> JSON:
        """Carry out every execution on one device; its result entry.

        Each command is turned into a change inside the write, from the device as it is
        there (no read before): an unknown device is ``NotFound`` from the write itself.
        """
        device: Device | None = None
        try:
            for execution in executions:
                command, params = execution["command"], execution.get("params", {})

                def change(current: Device, command: str = command, params: Any = params) -> Any:
                    wanted = command_change(current.type, command, params)
                    return wanted(current) if callable(wanted) else wanted

                device = await self._core.devices.set_state(
                    principal, device_id, change, source=SOURCE
                )
        except CommandError as exc:
            return _failed(device_id, exc.code)
        except NotFound:
            return _failed(device_id, "deviceNotFound")
        except PlanLimit:
            return _failed(device_id, "deviceOffline")  # suspended by the household's plan
        except ValueOutOfRange:
            return _failed(device_id, "valueOutOfRange")
        except Conflict:
            return _failed(device_id, "transientError")
        except StateRelayError as exc:
            if exc.status == 422:
                return _failed(device_id, "protocolError")
            raise
        if device is None:
            raise ProtocolError("each command needs at least one execution")
        return {
            "ids": [device_id],
            "status": "SUCCESS",
            "states": {"online": True, **states(device)},
        }

    async def _disconnect(self, principal: Principal) -> None:
        """Google unlinked: the grant is revoked (its listener ends the link and drops what
        was queued) and the link is ended here too, whatever the grant did."""
        await self._links.end(principal.tenant_id, principal.user_id, UNLINKED_BY_GOOGLE)
        with contextlib.suppress(NotFound):  # revoked meanwhile
            await self._core.oauth.revoke_user_grant(
                principal.tenant_id, principal.user_id, principal.credential_id
            )

    async def _device(self, principal: Principal, device_id: str) -> Device | None:
        try:
            return await self._core.devices.get(principal, device_id)
        except NotFound:
            return None


def _parse(body: Any) -> tuple[str, Mapping[str, Any]]:
    """The one input's intent (without ``action.devices.``) and payload."""
    if not isinstance(body, dict):
        raise ProtocolError("the body must be an object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError("the request must carry exactly one input")
    intent = inputs[0].get("intent")
    if not isinstance(intent, str) or not intent.startswith(INTENT_PREFIX):
        raise ProtocolError("the input has no action.devices intent")
    payload = inputs[0].get("payload", {})
    if not isinstance(payload, dict):
        raise ProtocolError("the input's payload must be an object")
    return intent.removeprefix(INTENT_PREFIX), payload


def _failed(device_id: str, code: str) -> JSON:
    return {"ids": [device_id], "status": "ERROR", "errorCode": code}


def _error_payload(request_id: str, code: str, detail: str) -> JSON:
    return {"requestId": request_id, "payload": {"errorCode": code, "debugString": detail}}


def _json(data: object, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=encode(data), status=status, content_type="application/json", headers=headers
    )
