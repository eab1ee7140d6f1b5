"""SessionService: digests only, idle and absolute timeouts, last-seen writes, CSRF tokens."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.core import Core
from staterelay.core.records import User
from tests.web.support import FakeClock, add_user, open_core

IDLE_HOURS = 2.0
ABSOLUTE_DAYS = 1.0


@pytest.fixture
def clock() -> FakeClock:
    """Time for the core under test."""
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def core(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Core]:
    """A Core with a 2-hour idle and 1-day absolute session lifetime."""
    async with open_core(
        tmp_path / "core.db",
        clock,
        session_idle_hours=IDLE_HOURS,
        session_absolute_days=ABSOLUTE_DAYS,
    ) as opened:
        yield opened


@pytest.fixture
async def alice(core: Core) -> User:
    """A user to sign in."""
    return await add_user(core, "alice@example.com")


async def test_only_the_digest_of_the_cookie_secret_is_stored(core: Core, alice: User) -> None:
    """The store finds the session by SHA-256 of the secret; the secret itself opens it."""
    secret, signed_in = await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    found = await core.store.find_session(digest)
    assert found is not None
    assert found[0].id == signed_in.session_id
    assert await core.store.find_session(secret) is None
    resolved = await core.sessions.resolve(secret)
    assert resolved is not None
    assert (resolved.user.id, resolved.session_id) == (alice.id, signed_in.session_id)


async def test_garbage_and_unknown_secrets_resolve_to_nobody(core: Core, alice: User) -> None:
    """Unknown, short, long or non-ASCII cookie values are anonymous."""
    await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    for value in ("", "x", "a" * 43, "é" * 43, "a" * 500):
        assert await core.sessions.resolve(value) is None


async def test_idle_timeout_ends_the_session(core: Core, alice: User, clock: FakeClock) -> None:
    """Unused for the idle time, a session is gone (and deleted), even if used before."""
    secret, _ = await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    clock.advance(IDLE_HOURS * 3600 - 1)
    assert await core.sessions.resolve(secret) is not None
    clock.advance(IDLE_HOURS * 3600)
    assert await core.sessions.resolve(secret) is None
    assert await core.store.list_sessions(alice.tenant_id, alice.id) == []


async def test_use_keeps_a_session_alive_until_the_absolute_limit(
    core: Core, alice: User, clock: FakeClock
) -> None:
    """Regular use beats the idle timeout, never the absolute one."""
    secret, _ = await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    elapsed = 0.0
    while elapsed + 3600 < ABSOLUTE_DAYS * 86400:
        clock.advance(3600)
        elapsed += 3600
        assert await core.sessions.resolve(secret) is not None, elapsed
    clock.advance(ABSOLUTE_DAYS * 86400 - elapsed)
    assert await core.sessions.resolve(secret) is None


async def test_last_seen_is_written_at_most_once_a_minute(
    core: Core, alice: User, clock: FakeClock
) -> None:
    """Resolving within a minute does not write; after a minute it does."""
    secret, _ = await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    start = clock.now
    clock.advance(59)
    await core.sessions.resolve(secret)
    (session,) = await core.store.list_sessions(alice.tenant_id, alice.id)
    assert session.last_seen_at == start
    clock.advance(1)
    await core.sessions.resolve(secret)
    (session,) = await core.store.list_sessions(alice.tenant_id, alice.id)
    assert session.last_seen_at == start + 60


async def test_users_list_and_revoke_only_their_own_sessions(core: Core, alice: User) -> None:
    """Another user's session id is not found; one's own is ended."""
    bob = await add_user(core, "bob@example.com")
    alice_secret, alice_in = await core.sessions.create(alice, ip="192.0.2.1", user_agent="a")
    _, alice_other = await core.sessions.create(alice, ip="192.0.2.2", user_agent="b")
    _, bob_in = await core.sessions.create(bob, ip="192.0.2.3", user_agent="c")
    listed = await core.sessions.list(alice_in)
    assert {s.id for s in listed} == {alice_in.session_id, alice_other.session_id}
    assert not await core.sessions.revoke(alice_in, bob_in.session_id)
    assert await core.sessions.revoke(alice_in, alice_other.session_id)
    assert [s.id for s in await core.sessions.list(alice_in)] == [alice_in.session_id]
    await core.sessions.end(alice_in)
    assert await core.sessions.resolve(alice_secret) is None


async def test_csrf_tokens_are_per_session_and_per_nonce(
    core: Core, alice: User, tmp_path: Path, clock: FakeClock
) -> None:
    """Each session has its own stable token; pre-session tokens depend on nonce and secret."""
    first_secret, first = await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    _, second = await core.sessions.create(alice, ip="192.0.2.1", user_agent="ua")
    again = await core.sessions.resolve(first_secret)
    assert again is not None
    assert again.csrf_token == first.csrf_token != second.csrf_token
    nonce_a, nonce_b = "a" * 43, "b" * 43
    token = core.sessions.anonymous_csrf_token(nonce_a)
    assert token == core.sessions.anonymous_csrf_token(nonce_a)
    assert token != core.sessions.anonymous_csrf_token(nonce_b)
    assert token != nonce_a
    async with open_core(tmp_path / "other.db", clock, secret=b"t" * 32) as other:
        assert other.sessions.anonymous_csrf_token(nonce_a) != token
