"""Frozen records of the accounts part of the store: browser sessions and invite links."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser; the cookie secret is kept only as a digest, never here."""

    id: str
    tenant_id: str
    user_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Invite:
    """A link an admin made for someone to join the admin's tenant; single use, expiring."""

    id: str
    tenant_id: str
    created_by: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    used_by: str | None = None


@dataclass(frozen=True, slots=True)
class PasswordReset:
    """A one-time link that sets a user's password; only its token's digest is stored."""

    id: str
    tenant_id: str
    user_id: str
    created_by: str | None
    created_at: float
    expires_at: float
    used_at: float | None = None
