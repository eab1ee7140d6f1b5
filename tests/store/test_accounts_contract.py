"""The accounts part of the store contract: sessions, passwords, sign-up, setup and invites."""

from __future__ import annotations

import dataclasses

import pytest

from staterelay.core.errors import Conflict, NotFound
from staterelay.core.records import Tenant, User
from staterelay.core.records.accounts import Invite, Session
from staterelay.store import Store

NOW = 1_800_000_000.0


async def tenant_with_user(store: Store, name: str, *, password_hash: str = "h0") -> User:
    """A tenant and one admin user in it."""
    tenant = await store.create_tenant(Tenant(id=f"ten_{name}", name=name, created_at=NOW))
    return await store.create_user(
        User(
            id=f"usr_{name}",
            tenant_id=tenant.id,
            email=f"{name}@example.com",
            is_admin=True,
            created_at=NOW,
            password_hash=password_hash,
        )
    )


def session_of(user: User, session_id: str, *, at: float = NOW, ttl: float = 3600.0) -> Session:
    """A session record for ``user``."""
    return Session(
        id=session_id,
        tenant_id=user.tenant_id,
        user_id=user.id,
        created_at=at,
        last_seen_at=at,
        expires_at=at + ttl,
        ip="127.0.0.1",
        user_agent="pytest",
    )


def new_user(user_id: str, email: str, tenant_id: str = "") -> User:
    """A user record not yet stored."""
    return User(
        id=user_id,
        tenant_id=tenant_id,
        email=email,
        is_admin=False,
        created_at=NOW,
        password_hash="h1",
    )


def invite_of(user: User, invite_id: str, *, expires_at: float = NOW + 600) -> Invite:
    """An invite record made by ``user``."""
    return Invite(
        id=invite_id,
        tenant_id=user.tenant_id,
        created_by=user.id,
        created_at=NOW,
        expires_at=expires_at,
    )


async def test_session_round_trip_by_digest(store: Store) -> None:
    """A session is found by its digest together with its user, and by nothing else."""
    alice = await tenant_with_user(store, "alice")
    stored = await store.create_session(session_of(alice, "ses_1"), "d1")
    found = await store.find_session("d1")
    assert found == (stored, alice)
    assert await store.find_session("d2") is None


async def test_touch_session_moves_last_seen_forward_only(store: Store) -> None:
    """Touching records the later time; an older touch changes nothing."""
    alice = await tenant_with_user(store, "alice")
    await store.create_session(session_of(alice, "ses_1"), "d1")
    await store.touch_session(alice.tenant_id, "ses_1", NOW + 120)
    await store.touch_session(alice.tenant_id, "ses_1", NOW + 60)
    found = await store.find_session("d1")
    assert found is not None
    assert found[0].last_seen_at == NOW + 120


async def test_list_and_delete_sessions_stay_in_tenant(store: Store) -> None:
    """Lists show one user's sessions; deletes need the right tenant and, if given, user."""
    alice = await tenant_with_user(store, "alice")
    bob = await tenant_with_user(store, "bob")
    await store.create_session(session_of(alice, "ses_a1", at=NOW), "da1")
    await store.create_session(session_of(alice, "ses_a2", at=NOW + 5), "da2")
    await store.create_session(session_of(bob, "ses_b1"), "db1")
    listed = await store.list_sessions(alice.tenant_id, alice.id)
    assert [s.id for s in listed] == ["ses_a2", "ses_a1"]
    assert not await store.delete_session(bob.tenant_id, "ses_a1")
    assert not await store.delete_session(alice.tenant_id, "ses_a1", user_id=bob.id)
    assert await store.delete_session(alice.tenant_id, "ses_a1", user_id=alice.id)
    assert not await store.delete_session(alice.tenant_id, "ses_a1")
    assert [s.id for s in await store.list_sessions(alice.tenant_id, alice.id)] == ["ses_a2"]
    assert await store.find_session("db1") is not None


async def test_prune_sessions_removes_idle_and_expired(store: Store) -> None:
    """Pruning deletes sessions unused since the cutoff or past their absolute expiry."""
    alice = await tenant_with_user(store, "alice")
    await store.create_session(session_of(alice, "ses_idle", at=NOW - 500), "d1")
    await store.create_session(session_of(alice, "ses_old", at=NOW, ttl=10), "d2")
    await store.create_session(session_of(alice, "ses_live", at=NOW), "d3")
    removed = await store.prune_sessions(idle_before=NOW - 100, now=NOW + 10)
    assert removed == 2
    assert [s.id for s in await store.list_sessions(alice.tenant_id, alice.id)] == ["ses_live"]


async def test_change_password_keeps_only_the_current_session(store: Store) -> None:
    """The hash changes and every other session of the user ends; other users keep theirs."""
    alice = await tenant_with_user(store, "alice")
    bob = await tenant_with_user(store, "bob")
    for n in range(3):
        await store.create_session(session_of(alice, f"ses_a{n}"), f"da{n}")
    await store.create_session(session_of(bob, "ses_b"), "db")
    ended = await store.change_password(alice.tenant_id, alice.id, "h2", keep_session_id="ses_a1")
    assert ended == 2
    assert [s.id for s in await store.list_sessions(alice.tenant_id, alice.id)] == ["ses_a1"]
    assert len(await store.list_sessions(bob.tenant_id, bob.id)) == 1
    found = await store.get_user(alice.tenant_id, alice.id)
    assert found is not None
    assert found.password_hash == "h2"


async def test_change_password_without_a_kept_session_ends_all(store: Store) -> None:
    """With no session to keep, every session of the user ends."""
    alice = await tenant_with_user(store, "alice")
    await store.create_session(session_of(alice, "ses_a"), "da")
    assert await store.change_password(alice.tenant_id, alice.id, "h2", keep_session_id=None) == 1
    with pytest.raises(NotFound):
        await store.change_password(alice.tenant_id, "usr_nobody", "h3", keep_session_id=None)


async def test_rehash_password_is_compare_and_set(store: Store) -> None:
    """A rehash applies only while the stored hash is still the one that was verified."""
    alice = await tenant_with_user(store, "alice", password_hash="old")
    assert not await store.rehash_password(alice.tenant_id, alice.id, "other", "new")
    assert await store.rehash_password(alice.tenant_id, alice.id, "old", "new")
    found = await store.get_user(alice.tenant_id, alice.id)
    assert found is not None
    assert found.password_hash == "new"


async def test_create_tenant_with_admin_is_all_or_nothing(store: Store) -> None:
    """The tenant and its admin are written together; a taken email leaves no tenant behind."""
    tenant = Tenant(id="ten_new", name="Home", created_at=NOW)
    user = await store.create_tenant_with_admin(tenant, new_user("usr_new", "new@example.com"))
    assert user.tenant_id == "ten_new"
    assert await store.get_user("ten_new", "usr_new") == user
    again = Tenant(id="ten_again", name="Home", created_at=NOW)
    with pytest.raises(Conflict):
        await store.create_tenant_with_admin(again, new_user("usr_2", "NEW@example.com"))
    assert await store.get_tenant("ten_again") is None


async def test_setup_token_is_kept_replaced_and_forgotten(store: Store) -> None:
    """One setup token digest at a time."""
    assert await store.setup_token_digest() is None
    await store.set_setup_token("s1")
    await store.set_setup_token("s2")
    assert await store.setup_token_digest() == "s2"
    await store.set_setup_token(None)
    assert await store.setup_token_digest() is None


async def test_first_admin_uses_the_setup_token_once(store: Store) -> None:
    """Only the stored digest works, once; the admin gets a new tenant when none exists."""
    await store.set_setup_token("s1")
    tenant = Tenant(id="ten_home", name="Home", created_at=NOW)
    with pytest.raises(NotFound):
        await store.create_first_admin("wrong", tenant, new_user("usr_1", "a@example.com"))
    admin = await store.create_first_admin("s1", tenant, new_user("usr_1", "a@example.com"))
    assert admin.tenant_id == "ten_home"
    assert await store.get_user("ten_home", "usr_1") == admin
    assert await store.setup_token_digest() is None
    with pytest.raises(NotFound):
        await store.create_first_admin("s1", tenant, new_user("usr_2", "b@example.com"))
    assert await store.count_users() == 1


async def test_first_admin_joins_an_existing_tenant(store: Store) -> None:
    """A household that already exists (with nobody in it) gets the first admin."""
    await store.create_tenant(Tenant(id="ten_old", name="Home", created_at=NOW))
    await store.set_setup_token("s1")
    fresh = Tenant(id="ten_unused", name="Home", created_at=NOW)
    admin = await store.create_first_admin("s1", fresh, new_user("usr_1", "a@example.com"))
    assert admin.tenant_id == "ten_old"
    assert await store.get_tenant("ten_unused") is None


async def test_first_admin_refused_once_any_user_exists(store: Store) -> None:
    """The setup token is worthless after a user was made some other way; it stays stored."""
    await tenant_with_user(store, "cli")
    await store.set_setup_token("s1")
    tenant = Tenant(id="ten_home", name="Home", created_at=NOW)
    with pytest.raises(NotFound):
        await store.create_first_admin("s1", tenant, new_user("usr_1", "a@example.com"))
    assert await store.count_users() == 1


async def test_invite_is_accepted_once(store: Store) -> None:
    """Accepting creates the user in the invite's tenant and uses the invite up."""
    admin = await tenant_with_user(store, "admin")
    await store.create_invite(invite_of(admin, "inv_1"), "i1")
    member = new_user("usr_m", "m@example.com", admin.tenant_id)
    assert await store.accept_invite("i1", member, NOW + 1) == member
    assert await store.get_user(admin.tenant_id, "usr_m") == member
    used = await store.find_invite("i1")
    assert used is not None
    assert (used.used_at, used.used_by) == (NOW + 1, "usr_m")
    with pytest.raises(NotFound):
        await store.accept_invite("i1", new_user("usr_x", "x@example.com", admin.tenant_id), NOW)


async def test_invite_refused_when_expired_foreign_or_unknown(store: Store) -> None:
    """An expired invite, one of another tenant or an unknown digest creates nobody."""
    admin = await tenant_with_user(store, "admin")
    other = await tenant_with_user(store, "other")
    await store.create_invite(invite_of(admin, "inv_1", expires_at=NOW + 10), "i1")
    with pytest.raises(NotFound):
        await store.accept_invite("i1", new_user("u1", "a@example.com", admin.tenant_id), NOW + 10)
    with pytest.raises(NotFound):
        await store.accept_invite("i1", new_user("u2", "b@example.com", other.tenant_id), NOW)
    with pytest.raises(NotFound):
        await store.accept_invite("nope", new_user("u3", "c@example.com", admin.tenant_id), NOW)
    assert await store.count_users() == 2


async def test_invite_with_a_taken_email_stays_unused(store: Store) -> None:
    """A conflict on the email rolls back: the invite still works for someone else."""
    admin = await tenant_with_user(store, "admin")
    await store.create_invite(invite_of(admin, "inv_1"), "i1")
    with pytest.raises(Conflict):
        await store.accept_invite("i1", new_user("u1", "ADMIN@example.com", admin.tenant_id), NOW)
    invite = await store.find_invite("i1")
    assert invite is not None
    assert invite.used_at is None
    assert await store.accept_invite("i1", new_user("u2", "b@example.com", admin.tenant_id), NOW)


async def test_list_and_revoke_pending_invites(store: Store) -> None:
    """Only unused, unexpired invites are listed and can be withdrawn, in their own tenant."""
    admin = await tenant_with_user(store, "admin")
    other = await tenant_with_user(store, "other")
    await store.create_invite(invite_of(admin, "inv_old", expires_at=NOW - 1), "i0")
    await store.create_invite(dataclasses.replace(invite_of(admin, "inv_1")), "i1")
    await store.create_invite(
        dataclasses.replace(invite_of(admin, "inv_2"), created_at=NOW + 1), "i2"
    )
    await store.accept_invite("i2", new_user("u1", "u1@example.com", admin.tenant_id), NOW)
    pending = await store.list_invites(admin.tenant_id, now=NOW)
    assert [i.id for i in pending] == ["inv_1"]
    assert not await store.revoke_invite(other.tenant_id, "inv_1")
    assert not await store.revoke_invite(admin.tenant_id, "inv_2")
    assert await store.revoke_invite(admin.tenant_id, "inv_1")
    assert await store.find_invite("i1") is None
