"""The tenant a request authenticated as, noted where credentials resolve, for its access line.

The HTTP layer opens a slot for each request; whichever credential the request carries (an
API key, an OAuth token, a session cookie) notes its tenant in it when core resolves it.
The slot is a mutable object in a context variable, so a note made in a task the handler
started still reaches the request's own slot.
"""

from __future__ import annotations

from contextvars import ContextVar, Token


class TenantSlot:
    """Where one request's tenant id is noted (None while unauthenticated)."""

    __slots__ = ("tenant_id",)

    def __init__(self) -> None:
        self.tenant_id: str | None = None


_SLOT: ContextVar[TenantSlot | None] = ContextVar("staterelay_request_tenant", default=None)


def open_slot() -> tuple[TenantSlot, Token[TenantSlot | None]]:
    """Start noting for a new request; pass the token to ``close_slot`` when it ends."""
    slot = TenantSlot()
    return slot, _SLOT.set(slot)


def close_slot(token: Token[TenantSlot | None]) -> None:
    """Stop noting for the request ``token`` came from."""
    _SLOT.reset(token)


def note_tenant(tenant_id: str) -> None:
    """Record that the current request acts for ``tenant_id`` (a no-op outside requests)."""
    slot = _SLOT.get()
    if slot is not None:
        slot.tenant_id = tenant_id
