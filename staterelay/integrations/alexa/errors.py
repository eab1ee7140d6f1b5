"""Alexa ErrorResponse types: one exception per wire error, its constants as class attributes."""

from __future__ import annotations

from typing import Any, ClassVar

from staterelay.core.errors import (
    CredentialExpired,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PlanLimit,
    StateRelayError,
    ValueOutOfRange,
)


class AlexaError(Exception):
    """An error answered as an ErrorResponse of ``namespace`` with payload ``type``."""

    namespace: ClassVar[str] = "Alexa"
    error_type: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def payload(self) -> dict[str, Any]:
        """The ErrorResponse payload."""
        return {"type": self.error_type, "message": self.message}


class InternalError(AlexaError):
    """Anything unexpected; logged with its traceback."""

    error_type = "INTERNAL_ERROR"


class InvalidDirective(AlexaError):
    """A directive StateRelay does not support, or one it cannot parse."""

    error_type = "INVALID_DIRECTIVE"


class NoSuchEndpoint(AlexaError):
    """The endpointId names no device of the user's household."""

    error_type = "NO_SUCH_ENDPOINT"


class InvalidValue(AlexaError):
    """A payload value of the wrong kind."""

    error_type = "INVALID_VALUE"


class ValueOutOfRangeError(AlexaError):
    """A number outside the property's range; says which range is valid."""

    error_type = "VALUE_OUT_OF_RANGE"

    def __init__(
        self, message: str, minimum: float | None = None, maximum: float | None = None
    ) -> None:
        super().__init__(message)
        self.minimum = minimum
        self.maximum = maximum

    def payload(self) -> dict[str, Any]:
        """The payload, with ``validRange`` when the range is known."""
        payload = super().payload()
        if self.minimum is not None and self.maximum is not None:
            payload["validRange"] = {"minimumValue": self.minimum, "maximumValue": self.maximum}
        return payload


class InvalidAuthorizationCredential(AlexaError):
    """The bearer token is missing, unknown or revoked."""

    error_type = "INVALID_AUTHORIZATION_CREDENTIAL"


class ExpiredAuthorizationCredential(AlexaError):
    """The bearer token expired; Alexa refreshes it and tries again."""

    error_type = "EXPIRED_AUTHORIZATION_CREDENTIAL"


class InsufficientPermissions(AlexaError):
    """The token's scopes do not allow this directive."""

    error_type = "INSUFFICIENT_PERMISSIONS"


class EndpointUnreachable(AlexaError):
    """The device (or StateRelay behind the relay) cannot be reached."""

    error_type = "ENDPOINT_UNREACHABLE"


class AcceptGrantFailed(AlexaError):
    """AcceptGrant could not be completed; Alexa tells the user linking failed."""

    namespace = "Alexa.Authorization"
    error_type = "ACCEPT_GRANT_FAILED"


def from_domain(error: StateRelayError) -> AlexaError:
    """The Alexa error a core error stands for."""
    if isinstance(error, CredentialExpired):
        return ExpiredAuthorizationCredential(error.detail)
    if isinstance(error, NotAuthenticated):
        return InvalidAuthorizationCredential(error.detail)
    if isinstance(error, Forbidden):
        return InsufficientPermissions(error.detail)
    if isinstance(error, NotFound):
        return NoSuchEndpoint(error.detail)
    if isinstance(error, PlanLimit):
        # A device over the plan's limit is unreachable, never gone: Routines survive.
        return EndpointUnreachable(error.detail)
    if isinstance(error, ValueOutOfRange):
        return ValueOutOfRangeError(error.detail)
    if isinstance(error, InvalidInput):
        return InvalidValue(error.detail)
    return InternalError(error.detail)
