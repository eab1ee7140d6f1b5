"""AccountService: setup token, registration modes, invites, sign-in, throttling, passwords."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from staterelay.core import Core
from staterelay.core.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from staterelay.core.records import User
from staterelay.core.sessions import SignedIn
from staterelay.core.throttle import LoginThrottled
from tests.web.support import OTHER_PASSWORD, PASSWORD, FakeClock, add_user, open_core

K = 3  # login_max_failures in these tests
STRONG_HASH = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")

OpenCore = Callable[..., AbstractAsyncContextManager[Core]]


@pytest.fixture
def clock() -> FakeClock:
    """Time for the core under test."""
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def core_with(tmp_path: Path, clock: FakeClock) -> OpenCore:
    """Open a Core with some accounts settings."""
    counter = iter(range(100))

    def opener(**accounts: Any) -> AbstractAsyncContextManager[Core]:
        accounts.setdefault("login_max_failures", K)
        return open_core(tmp_path / f"core{next(counter)}.db", clock, **accounts)

    return opener


@pytest.fixture
async def core(core_with: OpenCore) -> AsyncIterator[Core]:
    """A Core in the default invite mode."""
    async with core_with() as opened:
        yield opened


async def signed_in(core: Core, user: User) -> SignedIn:
    """A session for ``user``."""
    _, session = await core.sessions.create(user, ip="192.0.2.1", user_agent="test")
    return session


def assert_strong(password_hash: str | None) -> None:
    """Checklist 19: an argon2id hash with m >= 19456 KiB and t >= 2."""
    assert password_hash is not None
    match = STRONG_HASH.match(password_hash)
    assert match is not None, password_hash
    memory, time_cost, _ = (int(g) for g in match.groups())
    assert memory >= 19456
    assert time_cost >= 2


# setup ---------------------------------------------------------------------------------------
async def test_setup_token_only_while_an_invite_instance_has_no_users(
    core_with: OpenCore,
) -> None:
    """Invite mode without users gets a token; open and closed modes never do."""
    for mode in ("open", "closed"):
        async with core_with(registration=mode) as other:
            assert await other.accounts.begin_setup() is None
    async with core_with() as core:
        assert await core.accounts.begin_setup() is not None
        await add_user(core, "cli@example.com")
        assert await core.accounts.begin_setup() is None
        assert await core.store.setup_token_digest() is None


async def test_a_new_setup_token_replaces_the_old_one(core: Core) -> None:
    """Each start makes a new token; only the newest works."""
    first = await core.accounts.begin_setup()
    second = await core.accounts.begin_setup()
    assert first is not None
    assert second is not None
    assert first != second
    assert not await core.accounts.setup_token_valid(first)
    assert await core.accounts.setup_token_valid(second)
    assert await core.store.setup_token_digest() not in (first, second)


async def test_complete_setup_makes_one_admin_once(core: Core) -> None:
    """The token creates an admin with a strong hash, then is spent."""
    token = await core.accounts.begin_setup()
    with pytest.raises(NotFound):
        await core.accounts.complete_setup("x" * 43, email="a@example.com", password=PASSWORD)
    admin = await core.accounts.complete_setup(token, email="a@example.com", password=PASSWORD)
    assert admin.is_admin
    assert_strong(admin.password_hash)
    assert (await core.users.household()).id == admin.tenant_id
    with pytest.raises(NotFound):
        await core.accounts.complete_setup(token, email="b@example.com", password=PASSWORD)
    assert await core.users.count() == 1


async def test_setup_validates_before_spending_the_token(core: Core) -> None:
    """A bad email or short password names its field and leaves the token usable."""
    token = await core.accounts.begin_setup()
    with pytest.raises(InvalidInput) as bad_email:
        await core.accounts.complete_setup(token, email="nope", password=PASSWORD)
    assert bad_email.value.field == "email"
    with pytest.raises(InvalidInput) as short:
        await core.accounts.complete_setup(token, email="a@example.com", password="short")
    assert short.value.field == "password"
    assert await core.accounts.setup_token_valid(token)


# registration --------------------------------------------------------------------------------
async def test_open_registration_gives_each_sign_up_its_own_tenant(core_with: OpenCore) -> None:
    """Two sign-ups are admins of two different tenants."""
    async with core_with(registration="open") as core:
        one = await core.accounts.register(email="one@example.com", password=PASSWORD)
        two = await core.accounts.register(email="two@example.com", password=PASSWORD)
        assert one is not None
        assert two is not None
        assert one.is_admin
        assert two.is_admin
        assert one.tenant_id != two.tenant_id
        assert_strong(one.password_hash)


async def test_registration_with_a_taken_email_changes_nothing(core_with: OpenCore) -> None:
    """A taken address returns None, keeps the old password and makes no tenant."""
    async with core_with(registration="open") as core:
        first = await core.accounts.register(email="one@example.com", password=PASSWORD)
        assert first is not None
        assert (
            await core.accounts.register(email="ONE@example.com", password=OTHER_PASSWORD)
        ) is None
        assert await core.users.count() == 1
        user = await core.accounts.login(email="one@example.com", password=PASSWORD, ip="x")
        assert user.id == first.id


@pytest.mark.parametrize("mode", ["invite", "closed"])
async def test_registration_is_not_open_in_other_modes(core_with: OpenCore, mode: str) -> None:
    """Only open mode has sign-up."""
    async with core_with(registration=mode) as core:
        with pytest.raises(NotFound):
            await core.accounts.register(email="one@example.com", password=PASSWORD)
        assert await core.users.count() == 0


# invites -------------------------------------------------------------------------------------
async def test_an_invite_adds_a_member_to_the_admins_tenant_once(core: Core) -> None:
    """Accepting creates a non-admin in the inviter's tenant; the link then stops working."""
    admin = await add_user(core, "admin@example.com", is_admin=True)
    invite, token = await core.accounts.create_invite(await signed_in(core, admin))
    assert (await core.accounts.invite_for(token)).id == invite.id
    member = await core.accounts.accept_invite(token, email="m@example.com", password=PASSWORD)
    assert (member.tenant_id, member.is_admin) == (admin.tenant_id, False)
    with pytest.raises(NotFound):
        await core.accounts.invite_for(token)
    with pytest.raises(NotFound):
        await core.accounts.accept_invite(token, email="n@example.com", password=PASSWORD)


async def test_invites_expire(core: Core, clock: FakeClock) -> None:
    """An invite works for invite_valid_days and not a second longer."""
    admin = await add_user(core, "admin@example.com", is_admin=True)
    _, token = await core.accounts.create_invite(await signed_in(core, admin))
    clock.advance(core.accounts.settings.invite_valid_days * 86400 - 1)
    await core.accounts.invite_for(token)
    clock.advance(1)
    with pytest.raises(NotFound):
        await core.accounts.accept_invite(token, email="m@example.com", password=PASSWORD)


async def test_only_admins_invite_and_never_when_closed(core_with: OpenCore) -> None:
    """Members cannot invite; nobody can when registration is closed."""
    async with core_with() as core:
        member = await add_user(core, "member@example.com")
        with pytest.raises(Forbidden):
            await core.accounts.create_invite(await signed_in(core, member))
    async with core_with(registration="closed") as closed:
        admin = await add_user(closed, "admin@example.com", is_admin=True)
        with pytest.raises(Forbidden):
            await closed.accounts.create_invite(await signed_in(closed, admin))


async def test_withdrawn_invites_stop_working(core: Core) -> None:
    """An admin lists pending invites and withdraws one."""
    admin = await add_user(core, "admin@example.com", is_admin=True)
    me = await signed_in(core, admin)
    invite, token = await core.accounts.create_invite(me)
    assert [i.id for i in await core.accounts.list_invites(me)] == [invite.id]
    await core.accounts.revoke_invite(me, invite.id)
    with pytest.raises(NotFound):
        await core.accounts.invite_for(token)
    with pytest.raises(NotFound):
        await core.accounts.revoke_invite(me, invite.id)


# sign-in -------------------------------------------------------------------------------------
async def test_every_login_failure_looks_the_same(core: Core) -> None:
    """Unknown email, wrong password, passwordless user and junk all fail with one message."""
    await add_user(core, "alice@example.com")
    await core.users.create(email="nopass@example.com")
    attempts = [
        ("nobody@example.com", PASSWORD),
        ("alice@example.com", OTHER_PASSWORD),
        ("nopass@example.com", PASSWORD),
        ("alice@example.com", ""),
        ("alice@example.com", "x" * 2000),
        ("", PASSWORD),
    ]
    messages = set()
    for email, password in attempts:
        with pytest.raises(NotAuthenticated) as failed:
            await core.accounts.login(email=email, password=password, ip=email)
        messages.add(failed.value.detail)
    assert messages == {"the email or password is wrong"}


async def test_login_finds_the_email_in_any_case(core: Core) -> None:
    """Emails are matched case-insensitively, surrounding blanks ignored."""
    alice = await add_user(core, "alice@example.com")
    user = await core.accounts.login(email=" Alice@Example.COM ", password=PASSWORD, ip="x")
    assert user.id == alice.id


async def test_throttle_locks_one_account_from_rotating_addresses(
    core: Core, clock: FakeClock
) -> None:
    """Checklist 18: K failures from K addresses lock that account, for every address,
    even with the right password; another account still signs in from the same address."""
    await add_user(core, "alice@example.com")
    bob = await add_user(core, "bob@example.com")
    for n in range(K):
        with pytest.raises(NotAuthenticated):
            await core.accounts.login(
                email="alice@example.com", password=OTHER_PASSWORD, ip=f"198.51.100.{n}"
            )
    with pytest.raises(LoginThrottled) as locked:
        await core.accounts.login(email="alice@example.com", password=PASSWORD, ip="203.0.113.9")
    assert locked.value.status == 429
    assert locked.value.retry_after == 2
    user = await core.accounts.login(email="bob@example.com", password=PASSWORD, ip="198.51.100.0")
    assert user.id == bob.id
    clock.advance(locked.value.retry_after)
    await core.accounts.login(email="alice@example.com", password=PASSWORD, ip="203.0.113.9")


async def test_throttle_delays_grow_with_each_further_failure(core: Core, clock: FakeClock) -> None:
    """Each failure past the limit doubles the wait."""
    waits = []
    for n in range(K + 3):
        clock.advance(3600)  # past any lock, well within the one-day memory
        with pytest.raises(NotAuthenticated):
            await core.accounts.login(email="eve@example.com", password=PASSWORD, ip=f"ip{n}")
        waits.append(core.accounts.throttle.retry_after("eve@example.com", "fresh"))
    assert waits == [0, 0, 2, 4, 8, 16]


async def test_throttle_locks_a_spraying_address(core: Core) -> None:
    """Many failures over many accounts from one address lock that address only."""
    await add_user(core, "alice@example.com")
    for n in range(4 * K):
        with pytest.raises(NotAuthenticated):
            await core.accounts.login(email=f"u{n}@example.com", password=PASSWORD, ip="spray")
    with pytest.raises(LoginThrottled):
        await core.accounts.login(email="alice@example.com", password=PASSWORD, ip="spray")
    await core.accounts.login(email="alice@example.com", password=PASSWORD, ip="elsewhere")


async def test_weaker_hashes_are_upgraded_on_login(core: Core) -> None:
    """Checklist 19: a hash with weaker parameters is replaced after a correct login only."""
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    household = await core.users.household()
    user = await core.store.create_user(
        User(
            id="usr_weak",
            tenant_id=household.id,
            email="weak@example.com",
            is_admin=False,
            created_at=0.0,
            password_hash=weak,
        )
    )
    with pytest.raises(NotAuthenticated):
        await core.accounts.login(email=user.email, password=OTHER_PASSWORD, ip="x")
    assert (await core.users.get(user.tenant_id, user.id)).password_hash == weak
    await core.accounts.login(email=user.email, password=PASSWORD, ip="x")
    upgraded = (await core.users.get(user.tenant_id, user.id)).password_hash
    assert upgraded != weak
    assert_strong(upgraded)
    await core.accounts.login(email=user.email, password=PASSWORD, ip="x")
    assert (await core.users.get(user.tenant_id, user.id)).password_hash == upgraded


# passwords -----------------------------------------------------------------------------------
async def test_password_change_ends_every_other_session(core: Core) -> None:
    """The new password works, the old does not, and only the changing session survives."""
    alice = await add_user(core, "alice@example.com")
    bob = await add_user(core, "bob@example.com")
    here_secret, here = await core.sessions.create(alice, ip="a", user_agent="here")
    there_secret, _ = await core.sessions.create(alice, ip="b", user_agent="there")
    bob_secret, _ = await core.sessions.create(bob, ip="c", user_agent="bob")
    ended = await core.accounts.change_password(here, current=PASSWORD, new=OTHER_PASSWORD, ip="a")
    assert ended == 1
    assert await core.sessions.resolve(here_secret) is not None
    assert await core.sessions.resolve(there_secret) is None
    assert await core.sessions.resolve(bob_secret) is not None
    with pytest.raises(NotAuthenticated):
        await core.accounts.login(email=alice.email, password=PASSWORD, ip="a")
    changed = await core.accounts.login(email=alice.email, password=OTHER_PASSWORD, ip="a")
    assert_strong(changed.password_hash)


async def test_password_change_names_the_wrong_field(core: Core) -> None:
    """A wrong current password and a too-short new one are reported on their fields."""
    alice = await add_user(core, "alice@example.com")
    me = await signed_in(core, alice)
    with pytest.raises(InvalidInput) as wrong:
        await core.accounts.change_password(me, current="not it at all", new=OTHER_PASSWORD, ip="a")
    assert wrong.value.field == "current_password"
    with pytest.raises(InvalidInput) as short:
        await core.accounts.change_password(me, current=PASSWORD, new="short", ip="a")
    assert short.value.field == "new_password"
    await core.accounts.login(email=alice.email, password=PASSWORD, ip="a")


async def test_guessing_through_password_change_is_throttled(core: Core) -> None:
    """The change form cannot be used to guess a signed-in account's password fast."""
    alice = await add_user(core, "alice@example.com")
    me = await signed_in(core, alice)
    for _ in range(K):
        with pytest.raises(InvalidInput):
            await core.accounts.change_password(me, current="guess guess", new=PASSWORD, ip="a")
    with pytest.raises(LoginThrottled):
        await core.accounts.change_password(me, current=PASSWORD, new=OTHER_PASSWORD, ip="a")
