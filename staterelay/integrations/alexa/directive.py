"""Directives in, events out: parsing the v3 envelope and building every message we send.

Every message gets a fresh UUID4 ``messageId`` and ``payloadVersion`` "3"; answers echo the
directive's ``correlationToken``. ``timeOfSample`` comes from ``core.clock.iso`` (UTC, ``Z``,
milliseconds), the one format Amazon's schema accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from staterelay.core.records.quick_init import quick_init
from staterelay.integrations.alexa.errors import AlexaError, InvalidDirective

PAYLOAD_VERSION: Final = "3"
ENDPOINT_ID: Final = re.compile(r"[A-Za-z0-9_\-=#;:?@&]{1,256}")

JSON = dict[str, Any]


class MalformedDirective(Exception):
    """The body is not a directive at all: no header to answer to (HTTP 400)."""


@quick_init
@dataclass(frozen=True, slots=True)
class Directive:
    """One directive from Alexa, as the relay forwarded it."""

    namespace: str
    name: str
    correlation_token: str | None
    endpoint_id: str | None
    token: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    instance: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The handler registry key."""
        return (self.namespace, self.name)

    def response(self, properties: Sequence[JSON], *, name: str = "Response") -> JSON:
        """``Alexa.Response`` (or ``StateReport``) for this directive's endpoint."""
        message: JSON = {
            "event": {
                "header": header("Alexa", name, self.correlation_token),
                "endpoint": {"endpointId": self.endpoint_id},
                "payload": {},
            },
            "context": {"properties": list(properties)},
        }
        return message

    def error(self, error: AlexaError) -> JSON:
        """The ErrorResponse this directive gets for ``error`` (never with a context)."""
        return error_response(error, self.correlation_token, self.endpoint_id)


def _message_ids() -> Iterator[str]:
    """Version 4 UUIDs: the same 122 random bits and layout as ``str(uuid.uuid4())``.

    The randomness comes from ``os.urandom`` 256 ids at a time: one system call for many
    messages instead of one each.
    """
    while True:
        block = os.urandom(16 * 256).hex()
        for start in range(0, len(block), 32):
            h = block[start : start + 32]
            variant = "89ab"[int(h[16], 16) & 3]
            yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


_MESSAGE_IDS: Final = _message_ids()


def new_message_id() -> str:
    """A fresh messageId (a version 4 UUID, as Amazon prefers); call it on the event loop."""
    return next(_MESSAGE_IDS)


def header(namespace: str, name: str, correlation_token: str | None = None) -> JSON:
    """An event header; the correlation token only when the directive had one."""
    result: JSON = {
        "namespace": namespace,
        "name": name,
        "payloadVersion": PAYLOAD_VERSION,
        "messageId": new_message_id(),
    }
    if correlation_token:
        result["correlationToken"] = correlation_token
    return result


def error_response(
    error: AlexaError, correlation_token: str | None, endpoint_id: str | None
) -> JSON:
    """An ErrorResponse of the error's namespace."""
    event: JSON = {
        "header": header(error.namespace, "ErrorResponse", correlation_token),
        "payload": error.payload(),
    }
    if endpoint_id is not None and error.namespace == "Alexa":
        event["endpoint"] = {"endpointId": endpoint_id}
    return {"event": event}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _token(scope: Any) -> str | None:
    if isinstance(scope, dict) and scope.get("type", "BearerToken") == "BearerToken":
        return _text(scope.get("token"))
    return None


def salvage(body: Any) -> tuple[str | None, str | None, str | None]:
    """The namespace, correlation token and endpoint id of a body, as far as they can be read."""
    directive = body.get("directive") if isinstance(body, dict) else None
    head = directive.get("header") if isinstance(directive, dict) else None
    if not isinstance(directive, dict) or not isinstance(head, dict):
        raise MalformedDirective("the body has no directive header")
    endpoint = directive.get("endpoint")
    endpoint_id = _text(endpoint.get("endpointId")) if isinstance(endpoint, dict) else None
    if endpoint_id is not None and not ENDPOINT_ID.fullmatch(endpoint_id):
        endpoint_id = None
    return _text(head.get("namespace")), _text(head.get("correlationToken")), endpoint_id


def parse(body: Any) -> Directive:
    """A ``Directive``; ``MalformedDirective`` without a header, ``InvalidDirective`` otherwise."""
    _, correlation_token, endpoint_id = salvage(body)
    directive = body["directive"]
    head = directive["header"]
    namespace, name = _text(head.get("namespace")), _text(head.get("name"))
    if namespace is None or name is None:
        raise InvalidDirective("the directive header needs a namespace and a name")
    if head.get("payloadVersion") != PAYLOAD_VERSION:
        raise InvalidDirective('only payloadVersion "3" is supported')
    payload = directive.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidDirective("the directive payload must be an object")
    endpoint = directive.get("endpoint")
    token = None
    if isinstance(endpoint, dict):
        if endpoint_id is None and endpoint.get("endpointId") is not None:
            raise InvalidDirective("the endpointId is not a valid Alexa endpoint id")
        token = _token(endpoint.get("scope"))
    token = token or _token(payload.get("scope")) or _token(payload.get("grantee"))
    return Directive(
        namespace=namespace,
        name=name,
        correlation_token=correlation_token,
        endpoint_id=endpoint_id,
        token=token,
        payload=payload,
        instance=_text(head.get("instance")),
    )
