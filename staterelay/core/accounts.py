"""AccountService: first-run setup, sign-up per registration mode, invites, sign-in, passwords.

Registration modes (``accounts.registration``): ``invite`` (self-hosted default: the first
admin comes through a one-time setup link, everyone else through invite links), ``open``
(hosted: each sign-up gets a tenant of its own) and ``closed`` (command line only).

Sign-in and sign-up never tell which emails exist: an unknown email is checked against a
dummy argon2 hash so that it takes as long as a wrong password, and sign-up answers the same
whether or not the address was free.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Sequence

from staterelay.core.clock import Clock
from staterelay.core.crypto import token_digest
from staterelay.core.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, NotFound
from staterelay.core.ids import new_id
from staterelay.core.passwords import (
    HASHER,
    PASSWORD_MAX,
    hash_password,
    needs_rehash,
    validate_password,
    verify_password,
)
from staterelay.core.records import Tenant, User
from staterelay.core.records.accounts import Invite
from staterelay.core.sessions import SignedIn
from staterelay.core.storage import Store
from staterelay.core.throttle import LoginThrottle, account_key
from staterelay.core.users import DEFAULT_TENANT_NAME, validate_email
from staterelay.settings import AccountsSettings

_LOGGER = logging.getLogger(__name__)

HASH_CONCURRENCY = 2  # argon2 at 19 MiB each: two at a time keep a Pi's event loop responsive
TOKEN_MIN = 20
TOKEN_MAX = 100
WRONG_CREDENTIALS = "the email or password is wrong"


class PasswordWork:
    """Argon2 hashing and verifying in worker threads, at most ``limit`` at a time."""

    def __init__(self, limit: int = HASH_CONCURRENCY) -> None:
        self._gate = asyncio.Semaphore(limit)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """An argon2id hash at today's parameters."""
        async with self._gate:
            return await asyncio.to_thread(hash_password, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check a password; with no stored hash, spend the same time and answer False."""
        async with self._gate:
            if stored_hash is not None:
                return await asyncio.to_thread(verify_password, stored_hash, password)
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(HASHER.hash, secrets.token_hex(16))
            await asyncio.to_thread(verify_password, self._dummy, password)
            return False


class InviteUnusable(NotFound):
    """An invite link that cannot be used; ``reason`` is used, expired, closed or unknown."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _plausible_token(token: object) -> str | None:
    if isinstance(token, str) and TOKEN_MIN <= len(token) <= TOKEN_MAX and token.isascii():
        return token
    return None


class AccountService:
    """Everything about getting an account and proving it is yours."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: AccountsSettings,
        *,
        throttle: LoginThrottle | None = None,
        work: PasswordWork | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.settings = settings
        self.throttle = throttle or LoginThrottle(clock, max_failures=settings.login_max_failures)
        self._work = work or PasswordWork()

    @property
    def registration(self) -> str:
        """The registration mode: open, invite or closed."""
        return self.settings.registration

    # first-run setup -----------------------------------------------------------------------
    async def setup_required(self) -> bool:
        """True while an invite-mode instance has no user at all."""
        return self.registration == "invite" and await self._store.count_users() == 0

    async def begin_setup(self) -> str | None:
        """A fresh one-time setup token when setup is required (older ones stop working)."""
        if not await self.setup_required():
            await self._store.set_setup_token(None)
            return None
        token = secrets.token_urlsafe(32)
        await self._store.set_setup_token(token_digest(token))
        return token

    async def setup_token_valid(self, token: object) -> bool:
        """True when ``token`` is the current setup token and setup is still required."""
        clean = _plausible_token(token)
        if clean is None or not await self.setup_required():
            return False
        stored = await self._store.setup_token_digest()
        return stored is not None and hmac.compare_digest(stored, token_digest(clean))

    async def complete_setup(self, token: object, *, email: object, password: object) -> User:
        """Create the first admin with the setup token, which is used up."""
        if not await self.setup_token_valid(token):
            raise NotFound("this setup link is not valid (it works once, until an admin exists)")
        clean_email, clean_password = _credentials(email, password)
        password_hash = await self._work.hash(clean_password)
        now = self._clock()
        user = await self._store.create_first_admin(
            token_digest(str(token)),
            Tenant(id=new_id("ten"), name=DEFAULT_TENANT_NAME, created_at=now),
            User(
                id=new_id("usr"),
                tenant_id="",
                email=clean_email,
                is_admin=True,
                created_at=now,
                password_hash=password_hash,
            ),
        )
        _LOGGER.info("setup complete: the first admin account %s exists", user.id)
        return user

    # open registration ---------------------------------------------------------------------
    async def register(self, *, email: object, password: object) -> User | None:
        """Open mode: a new tenant with this user as its admin.

        Returns None, and changes nothing, when the email is taken; callers must answer both
        cases alike so that sign-up does not reveal which emails exist.
        """
        if self.registration != "open":
            raise NotFound("sign-up is not open on this instance")
        clean_email, clean_password = _credentials(email, password)
        # Hash before looking at the email, so taken and free addresses take equally long.
        password_hash = await self._work.hash(clean_password)
        now = self._clock()
        try:
            return await self._store.create_tenant_with_admin(
                Tenant(id=new_id("ten"), name=DEFAULT_TENANT_NAME, created_at=now),
                User(
                    id=new_id("usr"),
                    tenant_id="",
                    email=clean_email,
                    is_admin=True,
                    created_at=now,
                    password_hash=password_hash,
                ),
            )
        except Conflict:
            return None

    # invites -------------------------------------------------------------------------------
    def invites_allowed(self, user: User) -> bool:
        """True when ``user`` may invite people into their tenant."""
        return user.is_admin and self.registration != "closed"

    async def create_invite(self, signed_in: SignedIn) -> tuple[Invite, str]:
        """An invite link token into the admin's tenant; the token is shown only once."""
        if not self.invites_allowed(signed_in.user):
            raise Forbidden("only an admin can invite, and not while registration is closed")
        now = self._clock()
        token = secrets.token_urlsafe(32)
        invite = Invite(
            id=new_id("inv"),
            tenant_id=signed_in.tenant_id,
            created_by=signed_in.user_id,
            created_at=now,
            expires_at=now + self.settings.invite_valid_days * 86400.0,
        )
        return await self._store.create_invite(invite, token_digest(token)), token

    async def list_invites(self, signed_in: SignedIn) -> Sequence[Invite]:
        """The tenant's pending invites (admins only; empty for everyone else)."""
        if not signed_in.is_admin:
            return []
        return await self._store.list_invites(signed_in.tenant_id, now=self._clock())

    async def revoke_invite(self, signed_in: SignedIn, invite_id: str) -> None:
        """Withdraw a pending invite of the admin's tenant."""
        if not signed_in.is_admin:
            raise Forbidden("only an admin can withdraw invites")
        if not await self._store.revoke_invite(signed_in.tenant_id, invite_id):
            raise NotFound("no such pending invite")

    async def invite_for(self, token: object) -> Invite:
        """The pending invite a link token stands for; ``NotFound`` when it cannot be used."""
        clean = _plausible_token(token)
        invite = None if clean is None else await self._store.find_invite(token_digest(clean))
        if invite is None:
            raise InviteUnusable(
                "unknown",
                "this invite link is not known here: check that the whole link was copied, "
                "or ask for a new one",
            )
        if self.registration == "closed":
            raise InviteUnusable("closed", "this instance takes no new accounts at the moment")
        if invite.used_at is not None:
            raise InviteUnusable(
                "used", "this invite was used already (each works once): sign in instead"
            )
        if invite.expires_at <= self._clock():
            raise InviteUnusable(
                "expired", "this invite has expired: ask the person who sent it for a new one"
            )
        return invite

    async def accept_invite(self, token: object, *, email: object, password: object) -> User:
        """Create an account in the inviter's tenant and use up the invite."""
        invite = await self.invite_for(token)
        clean_email, clean_password = _credentials(email, password)
        password_hash = await self._work.hash(clean_password)
        now = self._clock()
        return await self._store.accept_invite(
            token_digest(str(token)),
            User(
                id=new_id("usr"),
                tenant_id=invite.tenant_id,
                email=clean_email,
                is_admin=False,
                created_at=now,
                password_hash=password_hash,
            ),
            now,
        )

    # sign-in and passwords -----------------------------------------------------------------
    async def login(self, *, email: object, password: object, ip: str) -> User:
        """The user these credentials belong to.

        ``LoginThrottled`` (429) while the account or the address is locked out, else
        ``NotAuthenticated`` with one message for every kind of failure.
        """
        typed_email = email if isinstance(email, str) else ""
        typed_password = password if isinstance(password, str) else ""
        key = account_key(typed_email)
        await self.throttle.acheck(key, ip)
        user = None
        if 0 < len(typed_email) <= 254:
            user = await self._store.find_user_by_email(typed_email.strip())
        stored_hash = user.password_hash if user is not None else None
        ok = False
        if 0 < len(typed_password) <= PASSWORD_MAX:
            ok = await self._work.verify(stored_hash, typed_password)
        if not ok or user is None or stored_hash is None:
            await self.throttle.arecord_failure(key, ip)
            raise NotAuthenticated(WRONG_CREDENTIALS)
        await self.throttle.arecord_success(key)
        if needs_rehash(stored_hash):
            new_hash = await self._work.hash(typed_password)
            if await self._store.rehash_password(user.tenant_id, user.id, stored_hash, new_hash):
                _LOGGER.info("upgraded the password hash of user %s", user.id)
        return user

    async def change_password(
        self, signed_in: SignedIn, *, current: object, new: object, ip: str
    ) -> int:
        """Set a new password and sign out every other session; returns how many ended."""
        key = account_key(signed_in.email)
        await self.throttle.acheck(key, ip)
        try:
            clean_new = validate_password(new)
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field="new_password") from None
        user = await self._store.get_user(signed_in.tenant_id, signed_in.user_id)
        typed = current if isinstance(current, str) else ""
        if user is None:
            raise NotAuthenticated("this account no longer exists")
        if not (0 < len(typed) <= PASSWORD_MAX) or not await self._work.verify(
            user.password_hash, typed
        ):
            await self.throttle.arecord_failure(key, ip)
            raise InvalidInput("the current password is wrong", field="current_password")
        await self.throttle.arecord_success(key)
        new_hash = await self._work.hash(clean_new)
        ended = await self._store.change_password(
            user.tenant_id, user.id, new_hash, keep_session_id=signed_in.session_id
        )
        _LOGGER.info("user %s changed their password; %d other sessions ended", user.id, ended)
        return ended


def _credentials(email: object, password: object) -> tuple[str, str]:
    """A valid email and password for a new account (password errors name ``password``)."""
    return validate_email(email), validate_password(password)
