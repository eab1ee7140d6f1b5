"""Domain errors: each carries an HTTP status and a stable machine-readable code.

Core and store raise these; every adapter translates them into its own wire format
(JSON problem for the API, Alexa ErrorResponse, IFTTT ``errors``, an HTML page).
"""

from __future__ import annotations

from typing import Any


class StateRelayError(Exception):
    """Base of every domain error."""

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def members(self) -> dict[str, Any]:
        """Extra members a JSON error document carries beyond code and detail."""
        return {}


class InvalidInput(StateRelayError):
    """The request is well-formed but a value is not acceptable."""

    status = 422
    code = "invalid_value"
    title = "Invalid value"


class ValueOutOfRange(InvalidInput):
    """A number is outside the range a property allows."""

    code = "value_out_of_range"
    title = "Value out of range"


class UnknownField(InvalidInput):
    """The request names a field this resource does not have."""

    code = "unknown_field"
    title = "Unknown field"


class BadRequest(StateRelayError):
    """The request cannot be parsed at all."""

    status = 400
    code = "bad_request"
    title = "Bad request"


class NotAuthenticated(StateRelayError):
    """No credential, or one that is unknown, revoked or expired."""

    status = 401
    code = "not_authenticated"
    title = "Not authenticated"


class CredentialExpired(NotAuthenticated):
    """A credential that was valid once has expired."""

    code = "credential_expired"
    title = "Credential expired"


class Forbidden(StateRelayError):
    """The principal is known but lacks the scope for this action."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(StateRelayError):
    """No such object in the caller's tenant (other tenants' objects included)."""

    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(StateRelayError):
    """The change conflicts with stored data (a duplicate name, say)."""

    status = 409
    code = "conflict"
    title = "Conflict"


class PreconditionFailed(StateRelayError):
    """An ``If-Match`` version did not match the stored one."""

    status = 412
    code = "version_mismatch"
    title = "Precondition failed"


class LimitReached(StateRelayError):
    """A plan or instance limit would be exceeded."""

    status = 409
    code = "limit_reached"
    title = "Limit reached"


class PlanLimit(StateRelayError):
    """The household's billing plan does not allow this; names the limit and where to upgrade.

    Raised for a creation beyond the plan's limit and for a change of a device the plan
    suspended (``limit`` is then ``suspended_device``).
    """

    status = 402
    code = "plan_limit"
    title = "Plan limit reached"

    def __init__(self, detail: str, *, limit: str, upgrade_url: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.upgrade_url = upgrade_url

    def members(self) -> dict[str, Any]:
        """The limit's name and the upgrade URL."""
        return {"limit": self.limit, "upgrade_url": self.upgrade_url}


class PlanRateLimited(StateRelayError):
    """More API requests a minute than the household's plan allows; ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, upgrade_url: str) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.upgrade_url = upgrade_url

    def members(self) -> dict[str, Any]:
        """The limit's name and the upgrade URL."""
        return {"limit": "api_per_minute", "upgrade_url": self.upgrade_url}


class Unavailable(StateRelayError):
    """A dependency (the database, say) is not ready."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"


class RequestTimeout(StateRelayError):
    """The request body did not arrive in time (``server.body_timeout_seconds``)."""

    status = 408
    code = "request_timeout"
    title = "Request timeout"


class StorageFull(StateRelayError):
    """The database has no room for a write; nothing of it was kept."""

    status = 507
    code = "storage_full"
    title = "Insufficient storage"
