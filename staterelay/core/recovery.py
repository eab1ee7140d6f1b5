"""Getting back into an account: one-time reset links, "Forgot password?" e-mails, the CLI.

A reset link holds a random token (``srp_...``); the database keeps only its SHA-256 digest.
It works once, for ``RESET_MINUTES`` minutes, and using it ends every session of the user.
An admin can make one for a member of the household and hand it over; with e-mail
configured, anyone can ask for one by address: the answer is the same whether or not the
address has an account, the mail is sent in the background (so the time taken says
nothing either), and requests are throttled per address and per client address.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Sequence
from typing import Any, Final

from staterelay.core.accounts import PasswordWork
from staterelay.core.clock import Clock
from staterelay.core.crypto import token_digest
from staterelay.core.errors import Forbidden, InvalidInput, NotFound
from staterelay.core.ids import new_id
from staterelay.core.mail import Mail, Mailer
from staterelay.core.passwords import validate_password
from staterelay.core.ratelimit import MemoryRateLimiter
from staterelay.core.records import User
from staterelay.core.records.accounts import Invite, PasswordReset
from staterelay.core.sessions import SignedIn
from staterelay.core.storage import Store
from staterelay.core.throttle import account_key
from staterelay.core.users import validate_email

_LOGGER = logging.getLogger(__name__)

RESET_MINUTES: Final = 30
TOKEN_PREFIX: Final = "srp_"
PER_ADDRESS_PER_HOUR: Final = 3
PER_CLIENT_PER_HOUR: Final = 10
RESET_PATH: Final = "/reset/"


class LinkUnusable(NotFound):
    """A reset link that cannot be used; ``reason`` says why, for the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"this reset link {reason}")
        self.reason = reason


def reset_token_plausible(token: object) -> str | None:
    """``token`` when it looks like one this module made."""
    if isinstance(token, str) and token.startswith(TOKEN_PREFIX) and 40 <= len(token) <= 80:
        return token if token.isascii() else None
    return None


class RecoveryService:
    """Reset links: made by an admin, e-mailed on request, used once; the CLI's password."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        work: PasswordWork,
        *,
        mailer: Mailer | None = None,
        limiter: MemoryRateLimiter | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._work = work
        self._mailer = mailer
        self._limiter = limiter or MemoryRateLimiter(now=clock)
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def can_email(self) -> bool:
        """True when e-mail is configured, so "Forgot password?" and invite mails work."""
        return self._mailer is not None

    # links ---------------------------------------------------------------------------------
    async def link_for_member(self, signed_in: SignedIn, user_id: str) -> tuple[User, str]:
        """An admin's reset link for a member of the household (the admin included)."""
        if not signed_in.is_admin:
            raise Forbidden("only an admin can make reset links")
        user = await self._store.get_user(signed_in.tenant_id, user_id)
        if user is None:
            raise NotFound("no such member of this household")
        token = await self._new_link(user, created_by=signed_in.user_id)
        _LOGGER.info("admin %s made a reset link for user %s", signed_in.user_id, user.id)
        return user, token

    async def request_by_email(self, email: object, ip: str, base_url: str) -> None:
        """ "Forgot password?": mail a link if the address has an account (never says which).

        Returns at once; the mail goes out in the background. Requests over the limits
        (per address, per client address) are dropped without a word.
        """
        if self._mailer is None:
            raise NotFound("e-mail is not set up on this instance")
        try:
            address = validate_email(email)
        except InvalidInput:
            raise InvalidInput("enter the e-mail address you sign in with", field="email") from None
        hour = 3600.0
        if await self._limiter.hit("reset-client", ip, PER_CLIENT_PER_HOUR, hour):
            _LOGGER.warning("dropped a reset request from %s: too many this hour", ip)
            return
        if await self._limiter.hit(
            "reset-address", account_key(address), PER_ADDRESS_PER_HOUR, hour
        ):
            _LOGGER.warning("dropped a reset request: too many for one address this hour")
            return
        self._background(self._mail_link(address, base_url))

    async def _mail_link(self, address: str, base_url: str) -> None:
        user = await self._store.find_user_by_email(address)
        if user is None:
            return
        token = await self._new_link(user, created_by=None)
        assert self._mailer is not None
        await self._mailer.send(
            Mail(
                to=user.email,
                subject="Reset your StateRelay password",
                text=(
                    "Someone (we hope you) asked to reset the password of your StateRelay "
                    f"account {user.email}.\n\nOpen this link to choose a new one; it works "
                    f"once, for {RESET_MINUTES} minutes:\n\n  {base_url}{RESET_PATH}{token}\n\n"
                    "Setting a new password signs you out everywhere. If you did not ask, "
                    "ignore this mail: your password stays as it is.\n"
                ),
            )
        )
        _LOGGER.info("mailed a reset link to user %s", user.id)

    async def mail_invite(
        self, signed_in: SignedIn, invite: Invite, email: object, link: str
    ) -> str:
        """Mail an invite link to ``email``; returns the address it went to."""
        if self._mailer is None:
            raise InvalidInput("e-mail is not set up on this instance", field="email")
        address = validate_email(email)
        days = max(1, round((invite.expires_at - invite.created_at) / 86400))
        await self._mailer.send(
            Mail(
                to=address,
                subject="You are invited to StateRelay",
                text=(
                    f"{signed_in.email} invites you to their StateRelay household.\n\n"
                    f"Open this link to make your account; it works once, for {days} "
                    f"day{'s' if days != 1 else ''}:\n\n  {link}\n"
                ),
            )
        )
        return address

    async def reset_for(self, token: object) -> PasswordReset:
        """The reset a link stands for; ``LinkUnusable`` saying why it cannot be used."""
        clean = reset_token_plausible(token)
        reset = (
            None if clean is None else await self._store.find_password_reset(token_digest(clean))
        )
        if reset is None:
            raise LinkUnusable("is not known here: check that the whole link was copied")
        if reset.used_at is not None:
            raise LinkUnusable("was used already (each link works once)")
        if reset.expires_at <= self._clock():
            raise LinkUnusable(f"has expired (links work for {RESET_MINUTES} minutes)")
        return reset

    async def complete(self, token: object, password: object) -> User:
        """Set the new password, use the link up and end every session of the user."""
        reset = await self.reset_for(token)
        clean_password = validate_password(password)
        new_hash = await self._work.hash(clean_password)
        user = await self._store.use_password_reset(
            token_digest(str(token)), reset.tenant_id, new_hash, self._clock()
        )
        _LOGGER.info("user %s set a new password with a reset link; every session ended", user.id)
        return user

    # the command line ----------------------------------------------------------------------
    async def set_password(self, email: str, password: object) -> int:
        """Set a user's password (``staterelay user set-password``); returns sessions ended."""
        user = await self._store.find_user_by_email(email.strip())
        if user is None:
            raise NotFound(f"no user with the email {email.strip()}")
        new_hash = await self._work.hash(validate_password(password))
        ended = await self._store.set_password(user.tenant_id, user.id, new_hash)
        _LOGGER.info("user %s has a new password; %d sessions ended", user.id, ended)
        return ended

    async def users(self) -> Sequence[User]:
        """Every user of the instance, oldest first (``staterelay user list``)."""
        return await self._store.list_users()

    async def members(self, signed_in: SignedIn) -> Sequence[User]:
        """The people of the admin's household (empty for everyone else)."""
        if not signed_in.is_admin:
            return []
        return await self._store.list_users(signed_in.tenant_id)

    # ---------------------------------------------------------------------------------------
    async def _new_link(self, user: User, *, created_by: str | None) -> str:
        now = self._clock()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        reset = PasswordReset(
            id=new_id("rst"),
            tenant_id=user.tenant_id,
            user_id=user.id,
            created_by=created_by,
            created_at=now,
            expires_at=now + RESET_MINUTES * 60.0,
        )
        await self._store.create_password_reset(reset, token_digest(token))
        return token

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(self._guard(work))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed mail must not end the server
            _LOGGER.warning("a reset mail could not be sent: %s", exc)

    async def drain(self) -> None:
        """Wait for mails still being sent (at shutdown, and in tests)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
