"""The OAuth part of the store contract: clients, codes, grants and tokens by digest."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from staterelay.core.errors import Conflict
from staterelay.core.records import Tenant, User
from staterelay.core.records.oauth import (
    NewOAuthToken,
    OAuthClient,
    OAuthCode,
    OAuthGrant,
)
from staterelay.store import Store

NOW = 1_800_000_000.0


async def user_in_tenant(store: Store, name: str) -> User:
    """A tenant with one user."""
    tenant = await store.create_tenant(Tenant(id=f"ten_{name}", name=name, created_at=NOW))
    return await store.create_user(
        User(
            id=f"usr_{name}",
            tenant_id=tenant.id,
            email=f"{name}@example.com",
            is_admin=False,
            created_at=NOW,
        )
    )


def client(client_id: str = "alexa", **changes: object) -> OAuthClient:
    """A client record."""
    record = OAuthClient(
        id=client_id,
        name="Amazon Alexa",
        redirect_uris=("https://pitangui.amazon.com/api/skill/link/M1",),
        token_endpoint_auth_method="client_secret_basic",
        scopes=("devices",),
        source="cli",
        created_at=NOW,
        secret_digest="d" * 64,
    )
    return dataclasses.replace(record, **changes)


def code(
    user: User, digest: str = "code1", client_id: str = "alexa", **changes: object
) -> OAuthCode:
    """An unused code of ``user``, valid for five minutes."""
    record = OAuthCode(
        digest=digest,
        tenant_id=user.tenant_id,
        user_id=user.id,
        client_id=client_id,
        redirect_uri="https://pitangui.amazon.com/api/skill/link/M1",
        redirect_uri_given=True,
        scopes=("devices",),
        code_challenge=None,
        code_challenge_method=None,
        created_at=NOW,
        expires_at=NOW + 300,
    )
    return dataclasses.replace(record, **changes)


def grant(user: User, grant_id: str = "grt_1", client_id: str = "alexa") -> OAuthGrant:
    """A new grant of ``user``."""
    return OAuthGrant(
        id=grant_id,
        tenant_id=user.tenant_id,
        user_id=user.id,
        client_id=client_id,
        scopes=("devices",),
        created_at=NOW,
    )


def pair(prefix: str) -> list[NewOAuthToken]:
    """An access and a refresh token row."""
    return [
        NewOAuthToken(f"{prefix}-access", "access", ("devices",), NOW + 3600),
        NewOAuthToken(f"{prefix}-refresh", "refresh", ("devices",), None),
    ]


async def linked(store: Store, user: User, grant_id: str = "grt_1", digest: str = "code1") -> None:
    """Exchange a fresh code so ``user`` has a grant with tokens ``<grant_id>-access/refresh``."""
    await store.save_oauth_code(code(user, digest))
    outcome = await store.exchange_oauth_code(
        digest, "alexa", grant(user, grant_id), pair(grant_id), NOW + 1
    )
    assert outcome == "issued"


# clients -------------------------------------------------------------------------------------
async def test_client_round_trip_and_duplicate_id(store: Store) -> None:
    created = await store.create_oauth_client(client())
    assert await store.get_oauth_client("alexa") == created
    assert await store.get_oauth_client("nope") is None
    with pytest.raises(Conflict):
        await store.create_oauth_client(client(name="Other"))
    await store.create_oauth_client(client("ifttt", created_at=NOW + 5))
    assert [c.id for c in await store.list_oauth_clients()] == ["alexa", "ifttt"]


async def test_upsert_replaces_settings_but_keeps_created_at(store: Store) -> None:
    await store.upsert_oauth_client(client(source="config"))
    updated = await store.upsert_oauth_client(
        client(
            source="config",
            name="Renamed",
            created_at=NOW + 100,
            redirect_uris=("https://layla.amazon.com/api/skill/link/M1",),
            token_endpoint_auth_method="client_secret_post",
            secret_digest="e" * 64,
        )
    )
    assert updated.created_at == NOW
    assert updated.name == "Renamed"
    assert updated.redirect_uris == ("https://layla.amazon.com/api/skill/link/M1",)
    assert updated.token_endpoint_auth_method == "client_secret_post"
    assert updated.secret_digest == "e" * 64
    assert await store.get_oauth_client("alexa") == updated


async def test_deleting_a_client_removes_its_grants_and_tokens(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    assert await store.delete_oauth_client("alexa")
    assert not await store.delete_oauth_client("alexa")
    assert await store.get_oauth_token("grt_1-access") is None
    assert await store.list_oauth_grants(user.tenant_id, user.id) == []


# codes ---------------------------------------------------------------------------------------
async def test_code_exchange_creates_grant_and_tokens(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await store.save_oauth_code(code(user, code_challenge="c" * 43, code_challenge_method="S256"))
    stored = await store.get_oauth_code("code1")
    assert stored is not None
    assert stored.code_challenge == "c" * 43
    assert stored.used_at is None
    outcome = await store.exchange_oauth_code("code1", "alexa", grant(user), pair("p"), NOW + 1)
    assert outcome == "issued"
    used = await store.get_oauth_code("code1")
    assert used is not None
    assert used.used_at == NOW + 1
    access = await store.get_oauth_token("p-access")
    assert access is not None
    assert (access.kind, access.grant_id, access.user_id, access.client_id) == (
        "access",
        "grt_1",
        user.id,
        "alexa",
    )
    assert access.expires_at == NOW + 3600
    assert not access.revoked
    refresh = await store.get_oauth_token("p-refresh")
    assert refresh is not None
    assert refresh.kind == "refresh"
    assert refresh.expires_at is None


async def test_second_exchange_of_a_code_revokes_the_first_grant(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    again = await store.exchange_oauth_code(
        "code1", "alexa", grant(user, "grt_2"), pair("q"), NOW + 2
    )
    assert again == "reused"
    first = await store.get_oauth_token("grt_1-access")
    assert first is not None
    assert first.revoked
    assert await store.get_oauth_token("q-access") is None
    assert await store.list_oauth_grants(user.tenant_id, user.id) == []


async def test_concurrent_exchanges_issue_at_most_once(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await store.save_oauth_code(code(user))
    outcomes = await asyncio.gather(
        *(
            store.exchange_oauth_code("code1", "alexa", grant(user, f"g{i}"), pair(f"t{i}"), NOW)
            for i in range(4)
        )
    )
    assert sorted(outcomes) == ["issued", "reused", "reused", "reused"]


@pytest.mark.parametrize(
    ("digest", "client_id", "at"),
    [
        ("unknown", "alexa", NOW + 1),
        ("code1", "ifttt", NOW + 1),
        ("code1", "alexa", NOW + 300),
    ],
    ids=["unknown", "other-client", "expired"],
)
async def test_unusable_codes_are_invalid(
    store: Store, digest: str, client_id: str, at: float
) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await store.create_oauth_client(client("ifttt"))
    await store.save_oauth_code(code(user))
    outcome = await store.exchange_oauth_code(
        digest, client_id, grant(user, client_id=client_id), pair("p"), at
    )
    assert outcome == "invalid"
    assert await store.get_oauth_token("p-access") is None


async def test_revoke_reused_code(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await store.save_oauth_code(code(user, "unused"))
    assert not await store.revoke_reused_oauth_code("unused", NOW)
    await linked(store, user)
    assert await store.revoke_reused_oauth_code("code1", NOW + 5)
    token = await store.get_oauth_token("grt_1-refresh")
    assert token is not None
    assert token.revoked


# tokens and grants ---------------------------------------------------------------------------
async def test_rotation_then_lost_race_returns_the_successor(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    first = await store.rotate_oauth_refresh("grt_1-refresh", "sealed-1", pair("r1"), NOW + 10)
    assert first.outcome == "rotated"
    rotated = await store.get_oauth_token("grt_1-refresh")
    assert rotated is not None
    assert (rotated.rotated_at, rotated.successor) == (NOW + 10, "sealed-1")
    new = await store.get_oauth_token("r1-refresh")
    assert new is not None
    assert new.grant_id == "grt_1"
    second = await store.rotate_oauth_refresh("grt_1-refresh", "sealed-2", pair("r2"), NOW + 11)
    assert (second.outcome, second.successor) == ("lost", "sealed-1")
    assert await store.get_oauth_token("r2-access") is None


async def test_reissue_while_the_successor_is_unused(store: Store) -> None:
    """A rotated token rotated again: the unused successor is revoked, a new pair issued; a
    concurrent reissue that lost gets the winner's successor; once a successor was used, the
    old token is superseded."""
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    await store.rotate_oauth_refresh("grt_1-refresh", "sealed-1", pair("r1"), NOW + 10)
    again = await store.reissue_oauth_refresh(
        "grt_1-refresh", NOW + 10, "sealed-2", pair("r2"), NOW + 500
    )
    assert again.outcome == "rotated"
    unused = await store.get_oauth_token("r1-refresh")
    assert unused is not None
    assert unused.revoked
    old = await store.get_oauth_token("grt_1-refresh")
    assert old is not None
    assert (old.rotated_at, old.successor, old.revoked) == (NOW + 500, "sealed-2", False)
    lost = await store.reissue_oauth_refresh(
        "grt_1-refresh", NOW + 10, "sealed-3", pair("r3"), NOW + 501
    )
    assert (lost.outcome, lost.successor) == ("lost", "sealed-2")
    assert await store.get_oauth_token("r3-access") is None
    # The successor is used (it rotates): the old token is over.
    await store.rotate_oauth_refresh("r2-refresh", "sealed-4", pair("r4"), NOW + 600)
    over = await store.reissue_oauth_refresh(
        "grt_1-refresh", NOW + 500, "sealed-5", pair("r5"), NOW + 700
    )
    assert over.outcome == "superseded"
    assert await store.get_oauth_token("r5-access") is None
    current = await store.get_oauth_token("r4-refresh")
    assert current is not None
    assert not current.revoked
    assert await store.revoke_oauth_grant(user.tenant_id, "grt_1", NOW + 800, reason="test")
    revoked = await store.reissue_oauth_refresh(
        "grt_1-refresh", NOW + 500, "sealed-6", pair("r6"), NOW + 900
    )
    assert revoked.outcome == "revoked"


async def test_rotation_of_a_revoked_grant_fails(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    assert await store.revoke_oauth_grant(user.tenant_id, "grt_1", NOW + 5, reason="test")
    rotation = await store.rotate_oauth_refresh("grt_1-refresh", "sealed", pair("r"), NOW + 6)
    assert rotation.outcome == "revoked"
    assert await store.get_oauth_token("r-access") is None
    missing = await store.rotate_oauth_refresh("nothing", "sealed", pair("s"), NOW + 6)
    assert missing.outcome == "revoked"


async def test_revoking_a_grant_revokes_every_token_and_drops_successors(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    await store.rotate_oauth_refresh("grt_1-refresh", "sealed", pair("r"), NOW + 10)
    assert await store.revoke_oauth_grant(user.tenant_id, "grt_1", NOW + 20, reason="user")
    assert not await store.revoke_oauth_grant(user.tenant_id, "grt_1", NOW + 21, reason="again")
    for digest in ("grt_1-access", "grt_1-refresh", "r-access", "r-refresh"):
        token = await store.get_oauth_token(digest)
        assert token is not None
        assert token.revoked_at == NOW + 20
        assert token.successor is None


async def test_a_user_revokes_only_their_own_grants(store: Store) -> None:
    alice = await user_in_tenant(store, "alice")
    mallory = await user_in_tenant(store, "mallory")
    await store.create_oauth_client(client())
    await linked(store, alice)
    assert not await store.revoke_oauth_grant(
        mallory.tenant_id, "grt_1", NOW, reason="x", user_id=mallory.id
    )
    assert not await store.revoke_oauth_grant(
        alice.tenant_id, "grt_1", NOW, reason="x", user_id=mallory.id
    )
    assert not await store.revoke_oauth_grant(mallory.tenant_id, "grt_1", NOW, reason="x")
    assert len(await store.list_oauth_grants(alice.tenant_id, alice.id)) == 1
    assert await store.revoke_oauth_grant(
        alice.tenant_id, "grt_1", NOW, reason="x", user_id=alice.id
    )


async def test_revoke_one_access_token(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    assert await store.revoke_oauth_access_token("grt_1-access", NOW + 3)
    assert not await store.revoke_oauth_access_token("grt_1-access", NOW + 4)
    assert not await store.revoke_oauth_access_token("grt_1-refresh", NOW + 4)
    access = await store.get_oauth_token("grt_1-access")
    refresh = await store.get_oauth_token("grt_1-refresh")
    assert access is not None
    assert refresh is not None
    assert access.revoked
    assert not refresh.revoked


async def test_list_grants_shows_active_grants_with_client_names(store: Store) -> None:
    alice = await user_in_tenant(store, "alice")
    bob = await user_in_tenant(store, "bob")
    await store.create_oauth_client(client())
    await linked(store, alice, "grt_1", "c1")
    await store.save_oauth_code(code(alice, "c2", created_at=NOW + 50))
    later = dataclasses.replace(grant(alice, "grt_2"), created_at=NOW + 50)
    assert await store.exchange_oauth_code("c2", "alexa", later, pair("g2"), NOW + 51) == "issued"
    await linked(store, bob, "grt_3", "c3")
    await store.revoke_oauth_grant(alice.tenant_id, "grt_1", NOW + 60, reason="x")
    apps = await store.list_oauth_grants(alice.tenant_id, alice.id)
    assert [(a.grant_id, a.client_id, a.client_name, a.scopes) for a in apps] == [
        ("grt_2", "alexa", "Amazon Alexa", ("devices",))
    ]
    assert apps[0].created_at == NOW + 50
    assert apps[0].last_used_at is None
    await store.touch_oauth_grants({"grt_2": NOW + 70})
    await store.touch_oauth_grants({"grt_2": NOW + 65})  # never moves backwards
    touched = await store.list_oauth_grants(alice.tenant_id, alice.id)
    assert touched[0].last_used_at == NOW + 70


async def test_purge_drops_old_successors_codes_and_expired_access_tokens(store: Store) -> None:
    user = await user_in_tenant(store, "a")
    await store.create_oauth_client(client())
    await linked(store, user)
    await store.rotate_oauth_refresh("grt_1-refresh", "sealed-old", pair("r1"), NOW + 10)
    await store.rotate_oauth_refresh("r1-refresh", "sealed-new", pair("r2"), NOW + 100)
    await store.save_oauth_code(code(user, "fresh", expires_at=NOW + 900))
    changed = await store.purge_oauth(successors_before=NOW + 50, expired_before=NOW + 600)
    assert changed == 2  # the old successor, the used and expired code1
    old = await store.get_oauth_token("grt_1-refresh")
    new = await store.get_oauth_token("r1-refresh")
    assert old is not None
    assert new is not None
    assert old.successor is None
    assert new.successor == "sealed-new"
    assert await store.get_oauth_code("code1") is None
    assert await store.get_oauth_code("fresh") is not None
    later = await store.purge_oauth(successors_before=NOW, expired_before=NOW + 3700)
    assert later == 4  # the three expired access tokens and the fresh code
    assert await store.get_oauth_token("grt_1-access") is None
    assert await store.get_oauth_token("grt_1-refresh") is not None
