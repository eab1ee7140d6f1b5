"""API-key authentication: digests, revocation and the short verification cache."""

from __future__ import annotations

import time

import pytest

from staterelay.core import Core
from staterelay.core.auth import recent_keys
from staterelay.core.crypto import token_digest
from staterelay.core.errors import NotAuthenticated
from staterelay.core.recent import RecentCache
from staterelay.core.records import Principal
from tests.conftest import Account


async def test_unknown_and_malformed_tokens_are_refused(core: Core) -> None:
    """Anything that is not a live key or resolvable token is NotAuthenticated."""
    for token in (None, "", "sr_nope", "Bearer x", "x" * 300):
        with pytest.raises(NotAuthenticated):
            await core.auth.authenticate(token)


async def test_key_is_stored_only_as_digest(core: Core, account: Account) -> None:
    """The store finds the key by digest and never holds the secret."""
    key = await core.store.find_api_key(token_digest(account.key))
    assert key is not None
    assert account.key not in repr(key)
    assert key.prefix == account.key[:7]


async def test_revocation_through_core_is_immediate(core: Core, account: Account) -> None:
    """A key revoked through core fails on the very next request, despite the cache."""
    principal = await core.auth.authenticate(account.key)
    await core.auth.revoke_key(principal, principal.credential_id)
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(account.key)


async def test_revocation_elsewhere_applies_within_the_cache_window(
    core: Core, account: Account
) -> None:
    """A revocation written by another process is honoured once the cache entry expires."""
    principal = await core.auth.authenticate(account.key)
    await core.store.revoke_api_key(
        account.tenant_id, account.user_id, principal.credential_id, time.time()
    )
    assert await core.auth.authenticate(account.key) == principal  # still cached
    core.auth._recent_keys = recent_keys(ttl=0.0)
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(account.key)


def test_recent_keys_expire_and_stay_bounded() -> None:
    """Entries expire after the TTL and the oldest are evicted past capacity."""
    now = [100.0]
    cache: RecentCache[Principal] = RecentCache(2.0, capacity=2, monotonic=lambda: now[0])
    who = Principal("t", "u", frozenset({"read"}), "api_key", "k1")
    cache.put("d1", who, cache.generation)
    assert cache.get("d1") == who
    now[0] += 2.0
    assert cache.get("d1") is None
    for digest in ("a", "b", "c"):
        cache.put(digest, who, cache.generation)
    assert cache.get("a") is None
    assert cache.get("c") == who
    other = Principal("t", "u", frozenset({"read"}), "api_key", "k2")
    cache.put("b", other, cache.generation)
    started = cache.generation
    cache.forget_where(lambda known: known.credential_id == "k1")
    assert cache.get("c") is None
    assert cache.get("b") == other
    cache.put("late", who, started)  # read before the revocation: not remembered
    assert cache.get("late") is None
