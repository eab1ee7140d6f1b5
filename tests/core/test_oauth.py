"""OAuthService: clients, codes, the refresh grace window, the resolver and linked apps."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.core import Core, CoreConfig, InProcessBus
from staterelay.core.crypto import token_digest
from staterelay.core.errors import (
    CredentialExpired,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
)
from staterelay.core.oauth import IssuedTokens, NewCode, recent_tokens
from staterelay.core.oauth_clients import alexa_preset, ifttt_preset, issuer_url
from staterelay.core.recent import RecentCache
from staterelay.core.records import Principal, User
from staterelay.settings import OAuthClientSettings, OAuthSettings
from staterelay.store import open_store

SECRET = b"k" * 32
START = 1_800_000_000.0
ALEXA_URI = "https://pitangui.amazon.com/api/skill/link/M2ABC"


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A frozen, movable clock."""
    return Clock()


@pytest.fixture
async def core(tmp_path: Path, clock: Clock) -> AsyncIterator[Core]:
    """A Core on a real SQLite file with an Alexa client in its config."""
    settings = OAuthSettings(
        refresh_grace_seconds=120,
        clients=(
            OAuthClientSettings(
                id="alexa-skill",
                secret="configured-secret-0123456789",
                redirect_uris=(ALEXA_URI,),
                name="Amazon Alexa",
            ),
        ),
    )
    store = open_store(f"sqlite:///{tmp_path / 'core.db'}")
    core = Core(
        store,
        InProcessBus(),
        instance_secret=SECRET,
        config=CoreConfig(oauth=settings),
        clock=clock,
    )
    await store.open()
    await core.oauth.load_config_clients()
    try:
        yield core
    finally:
        await core.bus.close()
        await store.close()


@pytest.fixture
async def user(core: Core) -> User:
    """A household user."""
    return await core.users.create(email="alice@example.com")


async def link(core: Core, user: User, client_id: str = "alexa-skill") -> IssuedTokens:
    """Approve and exchange a code: the tokens a new link receives."""
    code = core.oauth.new_code()
    await core.oauth.save_code(
        code,
        NewCode(
            client_id=client_id,
            tenant_id=user.tenant_id,
            user_id=user.id,
            redirect_uri=ALEXA_URI,
            redirect_uri_given=True,
            scopes=("devices",),
        ),
    )
    stored = await core.oauth.find_code(code)
    assert stored is not None
    tokens = core.oauth.issue_tokens(("devices",))
    assert await core.oauth.exchange_code(stored, tokens)
    return tokens


def principal(user: User, scopes: tuple[str, ...] = ("read", "write")) -> Principal:
    """A principal of ``user`` (as an API key would give)."""
    return Principal(user.tenant_id, user.id, frozenset(scopes), "api_key", "key_1")


# clients -------------------------------------------------------------------------------------
async def test_config_clients_are_stored_with_a_secret_digest_only(core: Core) -> None:
    stored = await core.oauth.get_client("alexa-skill")
    assert stored is not None
    assert stored.source == "config"
    assert stored.secret_digest == token_digest("configured-secret-0123456789")
    assert core.oauth.check_secret(stored, "configured-secret-0123456789")
    assert not core.oauth.check_secret(stored, "configured-secret-012345678")


async def test_reloading_config_clients_updates_them(core: Core) -> None:
    replaced = dataclasses.replace(
        core.oauth.settings,
        clients=(
            OAuthClientSettings(
                id="alexa-skill",
                secret="a-new-secret-abcdefghijkl",
                redirect_uris=(ALEXA_URI,),
                token_endpoint_auth_method="client_secret_post",
                name="Renamed",
            ),
        ),
    )
    core.oauth.settings = replaced
    assert await core.oauth.load_config_clients() == 1
    stored = await core.oauth.get_client("alexa-skill")
    assert stored is not None
    assert (stored.name, stored.token_endpoint_auth_method) == ("Renamed", "client_secret_post")
    assert core.oauth.check_secret(stored, "a-new-secret-abcdefghijkl")
    assert len(await core.oauth.list_clients()) == 1


async def test_a_bad_config_client_names_its_key(core: Core) -> None:
    core.oauth.settings = dataclasses.replace(
        core.oauth.settings,
        clients=(
            OAuthClientSettings(
                id="x-client", secret="long-enough-secret-123", redirect_uris=("http://a.b/c",)
            ),
        ),
    )
    with pytest.raises(ValueError, match=r"oauth\.clients\[0\]\.redirect_uris"):
        await core.oauth.load_config_clients()


async def test_create_client_shows_the_secret_once_and_stores_its_digest(core: Core) -> None:
    preset = ifttt_preset("staterelay")
    created, secret = await core.oauth.create_client(
        name=preset.name,
        redirect_uris=preset.redirect_uris,
        token_endpoint_auth_method=preset.token_endpoint_auth_method,
        scopes=preset.scopes,
        client_id="ifttt-1",
    )
    assert created.redirect_uris == ("https://ifttt.com/channels/staterelay/authorize",)
    assert created.token_endpoint_auth_method == "client_secret_post"
    assert created.secret_digest == token_digest(secret)
    assert secret not in repr(created)
    assert await core.oauth.get_client("ifttt-1") == created


@pytest.mark.parametrize(
    ("uris", "scopes"),
    [
        (("http://example.com/cb",), ("devices",)),
        (("https://example.com/cb#frag",), ("devices",)),
        (("/relative",), ("devices",)),
        ((), ("devices",)),
        (("https://example.com/cb",), ("admin",)),
    ],
    ids=["plain-http", "fragment", "relative", "none", "unknown-scope"],
)
async def test_create_client_refuses_bad_settings(
    core: Core, uris: tuple[str, ...], scopes: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidInput):
        await core.oauth.create_client(
            name="App",
            redirect_uris=uris,
            token_endpoint_auth_method="client_secret_basic",
            scopes=scopes,
        )


def test_presets() -> None:
    alexa = alexa_preset("M2ABC")
    assert alexa.redirect_uris == (
        "https://pitangui.amazon.com/api/skill/link/M2ABC",
        "https://layla.amazon.com/api/skill/link/M2ABC",
        "https://alexa.amazon.co.jp/api/skill/link/M2ABC",
    )
    assert alexa.token_endpoint_auth_method == "client_secret_basic"
    ifttt = ifttt_preset("my_service")
    assert ifttt.token_endpoint_auth_method == "client_secret_post"
    with pytest.raises(InvalidInput):
        alexa_preset("bad/id")
    assert issuer_url("https://home.example.com/", None) == "https://home.example.com"
    assert issuer_url("https://app.example.com:8443", "auth.example.com") == (
        "https://auth.example.com:8443"
    )


async def test_deleting_a_client_unlinks_its_users(core: Core, user: User) -> None:
    tokens = await link(core, user)
    await core.oauth.delete_client("alexa-skill")
    with pytest.raises(NotFound):
        await core.oauth.delete_client("alexa-skill")
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(tokens.access_token)


# codes ---------------------------------------------------------------------------------------
async def test_code_ttl_is_capped_at_ten_minutes(tmp_path: Path, clock: Clock) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ttl.db'}")
    core = Core(
        store,
        InProcessBus(),
        instance_secret=SECRET,
        config=CoreConfig(oauth=OAuthSettings(code_ttl_seconds=3600)),
        clock=clock,
    )
    assert core.oauth.code_ttl == 600
    await core.bus.close()


async def test_codes_are_stored_by_digest_and_expire(core: Core, user: User, clock: Clock) -> None:
    code = core.oauth.new_code()
    saved = await core.oauth.save_code(
        code,
        NewCode("alexa-skill", user.tenant_id, user.id, ALEXA_URI, True, ("devices",)),
    )
    assert saved.digest == token_digest(code)
    assert saved.expires_at == START + 300
    assert await core.oauth.find_code("src_unknown") is None
    assert await core.oauth.find_code("not-even-ours") is None
    assert not core.oauth.code_expired(saved)
    clock.now += 300
    assert core.oauth.code_expired(saved)
    assert not await core.oauth.exchange_code(saved, core.oauth.issue_tokens(("devices",)))


async def test_exchanging_a_code_twice_revokes_the_first_tokens(core: Core, user: User) -> None:
    code = core.oauth.new_code()
    await core.oauth.save_code(
        code, NewCode("alexa-skill", user.tenant_id, user.id, ALEXA_URI, True, ("devices",))
    )
    fresh = await core.oauth.find_code(code)
    assert fresh is not None
    tokens = core.oauth.issue_tokens(("devices",))
    assert await core.oauth.exchange_code(fresh, tokens)
    assert (await core.auth.authenticate(tokens.access_token)).user_id == user.id
    assert not await core.oauth.exchange_code(fresh, core.oauth.issue_tokens(("devices",)))
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(tokens.access_token)
    assert await core.oauth.list_user_grants(user.tenant_id, user.id) == []


async def test_a_used_code_seen_before_exchange_revokes_its_grant(core: Core, user: User) -> None:
    code = core.oauth.new_code()
    await core.oauth.save_code(
        code, NewCode("alexa-skill", user.tenant_id, user.id, ALEXA_URI, True, ("devices",))
    )
    fresh = await core.oauth.find_code(code)
    assert fresh is not None
    tokens = core.oauth.issue_tokens(("devices",))
    assert await core.oauth.exchange_code(fresh, tokens)
    used = await core.oauth.find_code(code)
    assert used is not None
    assert used.used_at is not None
    await core.oauth.code_reused(used)
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(tokens.access_token)


# refresh -------------------------------------------------------------------------------------
async def test_refresh_rotation_grace_window_and_reuse(
    core: Core, user: User, clock: Clock
) -> None:
    first = await link(core, user)
    assert first.refresh_token is not None
    old = await core.oauth.find_token(first.refresh_token)
    assert old is not None
    assert core.oauth.refresh_state(old) == "current"

    second = core.oauth.issue_tokens(("devices",))
    assert await core.oauth.rotate(old, second) is second
    clock.now += 60
    rotated = await core.oauth.find_token(first.refresh_token)
    assert rotated is not None
    assert core.oauth.refresh_state(rotated) == "replay"
    replay = core.oauth.successor_of(rotated)
    assert replay == second  # the very same pair, decrypted from the rotated row

    stored = await core.store.get_oauth_token(token_digest(first.refresh_token))
    assert stored is not None
    assert stored.successor is not None
    assert second.access_token not in stored.successor
    assert second.refresh_token is not None
    assert second.refresh_token not in stored.successor

    clock.now += 61  # 121 s after the rotation: past the 120 s window
    late = await core.oauth.find_token(first.refresh_token)
    assert late is not None
    assert core.oauth.refresh_state(late) == "stale"
    await core.oauth.refresh_reused(late)
    for token in (first.access_token, second.access_token):
        with pytest.raises(NotAuthenticated):
            await core.auth.authenticate(token)
    newest = await core.oauth.find_token(second.refresh_token)
    assert newest is not None
    assert core.oauth.refresh_state(newest) == "revoked"


async def test_concurrent_rotations_hand_out_one_pair(core: Core, user: User) -> None:
    first = await link(core, user)
    assert first.refresh_token is not None
    old = await core.oauth.find_token(first.refresh_token)
    assert old is not None
    winner = core.oauth.issue_tokens(("devices",))
    loser = core.oauth.issue_tokens(("devices",))
    assert await core.oauth.rotate(old, winner) is winner
    assert await core.oauth.rotate(old, loser) == winner
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(loser.access_token)


async def test_successors_are_dropped_after_the_window(
    core: Core, user: User, clock: Clock
) -> None:
    first = await link(core, user)
    assert first.refresh_token is not None
    old = await core.oauth.find_token(first.refresh_token)
    assert old is not None
    await core.oauth.rotate(old, core.oauth.issue_tokens(("devices",)))
    assert await core.oauth.drop_expired_successors() == 0
    clock.now += 121
    assert await core.oauth.drop_expired_successors() == 1
    stored = await core.store.get_oauth_token(token_digest(first.refresh_token))
    assert stored is not None
    assert stored.successor is None
    assert core.oauth.refresh_state(stored) == "stale"


# the resolver --------------------------------------------------------------------------------
async def test_access_tokens_resolve_like_api_keys(core: Core, user: User) -> None:
    tokens = await link(core, user)
    found = await core.auth.authenticate(tokens.access_token)
    grant = (await core.oauth.list_user_grants(user.tenant_id, user.id))[0]
    assert found == Principal(
        tenant_id=user.tenant_id,
        user_id=user.id,
        scopes=frozenset({"read", "write"}),
        credential="oauth",
        credential_id=grant.grant_id,
        client_id="alexa-skill",
    )


async def test_expired_access_tokens_raise_credential_expired(
    core: Core, user: User, clock: Clock
) -> None:
    tokens = await link(core, user)
    clock.now += 3599
    await core.auth.authenticate(tokens.access_token)
    clock.now += 1
    with pytest.raises(CredentialExpired):
        await core.auth.authenticate(tokens.access_token)


@pytest.mark.parametrize("kind", ["refresh", "unknown", "revoked"])
async def test_other_bearers_are_not_authenticated(core: Core, user: User, kind: str) -> None:
    tokens = await link(core, user)
    assert tokens.refresh_token is not None
    bearer = {
        "refresh": tokens.refresh_token,
        "unknown": "sra_" + "x" * 43,
        "revoked": tokens.access_token,
    }[kind]
    if kind == "revoked":
        stored = await core.oauth.find_token(tokens.access_token)
        assert stored is not None
        await core.oauth.revoke_token(stored)
    with pytest.raises(NotAuthenticated) as raised:
        await core.auth.authenticate(bearer)
    assert not isinstance(raised.value, CredentialExpired)


async def test_last_used_is_batched(core: Core, user: User, clock: Clock) -> None:
    tokens = await link(core, user)
    await core.auth.authenticate(tokens.access_token)
    stored = await core.store.list_oauth_grants(user.tenant_id, user.id)
    assert stored[0].last_used_at is None  # nothing written per request
    shown = await core.oauth.list_grants(principal(user))
    assert shown[0].last_used_at == START  # but the listing already knows
    assert await core.oauth.flush_last_used() == 1
    clock.now += 10
    await core.auth.authenticate(tokens.access_token)
    assert await core.oauth.flush_last_used() == 0  # written less than a minute ago
    assert await core.oauth.flush_last_used(force=True) == 1
    written = await core.store.list_oauth_grants(user.tenant_id, user.id)
    assert written[0].last_used_at == START + 10


@pytest.mark.parametrize("how", ["token", "grant", "client", "refresh reuse"])
async def test_revocation_through_core_is_immediate_despite_the_cache(
    core: Core, user: User, how: str
) -> None:
    """A token resolved a moment ago (so remembered) fails on the very next request."""
    tokens = await link(core, user)
    found = await core.auth.authenticate(tokens.access_token)
    if how == "token":
        stored = await core.oauth.find_token(tokens.access_token)
        assert stored is not None
        await core.oauth.revoke_token(stored)
    elif how == "grant":
        await core.oauth.revoke_grant(principal(user), found.credential_id)
    elif how == "client":
        await core.oauth.delete_client("alexa-skill")
    else:
        assert tokens.refresh_token is not None
        refresh = await core.oauth.find_token(tokens.refresh_token)
        assert refresh is not None
        await core.oauth.refresh_reused(refresh)
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(tokens.access_token)


async def test_token_revocation_elsewhere_applies_within_the_cache_window(
    core: Core, user: User
) -> None:
    """A revocation written by another process is honoured once the cache entry expires."""
    tokens = await link(core, user)
    found = await core.auth.authenticate(tokens.access_token)
    await core.store.revoke_oauth_access_token(token_digest(tokens.access_token), START)
    assert await core.auth.authenticate(tokens.access_token) == found  # still remembered
    core.oauth._recent = recent_tokens(ttl=0.0)
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(tokens.access_token)


def test_recent_tokens_expire_stay_bounded_and_skip_raced_reads() -> None:
    """Entries expire after the TTL, the oldest go past capacity, and a read that started
    before a revocation (``clear``) is not remembered after it."""
    now = [100.0]
    cache: RecentCache[tuple[Principal, float | None]] = RecentCache(
        2.0, capacity=2, monotonic=lambda: now[0]
    )
    who = Principal("t", "u", frozenset({"read"}), "oauth", "grt_1")
    cache.put("d1", (who, 500.0), cache.generation)
    assert cache.get("d1") == (who, 500.0)
    now[0] += 2.0
    assert cache.get("d1") is None
    for digest in ("d1", "d2", "d3"):
        cache.put(digest, (who, None), cache.generation)
    assert cache.get("d1") is None
    assert cache.get("d3") == (who, None)
    started = cache.generation
    cache.clear()
    assert cache.get("d3") is None
    cache.put("d4", (who, None), started)
    assert cache.get("d4") is None


# linked apps ---------------------------------------------------------------------------------
async def test_list_and_revoke_linked_apps(core: Core, user: User) -> None:
    other = await core.users.create(email="bob@example.com")
    tokens = await link(core, user)
    apps = await core.oauth.list_grants(principal(user))
    assert [(a.client_id, a.client_name, a.scopes) for a in apps] == [
        ("alexa-skill", "Amazon Alexa", ("devices",))
    ]
    assert apps[0].created_at == START
    assert await core.oauth.list_grants(principal(other)) == []
    with pytest.raises(NotFound):
        await core.oauth.revoke_grant(principal(other), apps[0].grant_id)
    with pytest.raises(Forbidden):
        await core.oauth.revoke_grant(principal(user, ("read",)), apps[0].grant_id)
    await core.oauth.revoke_grant(principal(user), apps[0].grant_id)
    with pytest.raises(NotAuthenticated):
        await core.auth.authenticate(tokens.access_token)
    assert tokens.refresh_token is not None
    refresh = await core.oauth.find_token(tokens.refresh_token)
    assert refresh is not None
    assert core.oauth.refresh_state(refresh) == "revoked"
    assert await core.oauth.list_grants(principal(user)) == []
    with pytest.raises(NotFound):
        await core.oauth.revoke_grant(principal(user), apps[0].grant_id)
