"""Core's delivery planner, as the store contract tests hand it to the store."""

from __future__ import annotations

from collections.abc import Sequence

from staterelay.core.delivery import BUILT_IN_POLICIES, DeliveryPlanner
from staterelay.core.records import (
    Device,
    DeviceRemoval,
    DeviceRemover,
    NewActivity,
    NewOutboxEvent,
)
from staterelay.core.records.oauth import NewOAuthToken, OAuthClient, OAuthCode, OAuthGrant
from staterelay.core.storage import Store

PLAN = DeliveryPlanner(BUILT_IN_POLICIES).plan


def removal(activity: NewActivity, events: Sequence[NewOutboxEvent] = ()) -> DeviceRemover:
    """A remover that always agrees, logging ``activity`` and owing ``events``."""

    def remove(_device: Device) -> DeviceRemoval:
        return DeviceRemoval(activity=activity, events=tuple(events))

    return remove


async def link_ifttt(store: Store, tenant_id: str, user_id: str, now: float) -> None:
    """Link the household's IFTTT service the way a real link does: a code exchanged by a
    client redirecting to ifttt.com, for the ``ifttt`` scope. From then on its changes are
    written to the IFTTT timelines."""
    redirect = "https://ifttt.com/channels/staterelay/authorize"
    if await store.get_oauth_client("ifttt") is None:
        await store.create_oauth_client(
            OAuthClient(
                id="ifttt",
                name="IFTTT",
                redirect_uris=(redirect,),
                token_endpoint_auth_method="client_secret_post",
                scopes=("ifttt",),
                source="cli",
                created_at=now,
                secret_digest="f" * 64,
            )
        )
    digest = f"ifttt-code-{tenant_id}-{user_id}"
    await store.save_oauth_code(
        OAuthCode(
            digest=digest,
            tenant_id=tenant_id,
            user_id=user_id,
            client_id="ifttt",
            redirect_uri=redirect,
            redirect_uri_given=True,
            scopes=("ifttt",),
            code_challenge=None,
            code_challenge_method=None,
            created_at=now,
            expires_at=now + 300,
        )
    )
    grant = OAuthGrant(
        id=f"grt_ifttt_{tenant_id}_{user_id}",
        tenant_id=tenant_id,
        user_id=user_id,
        client_id="ifttt",
        scopes=("ifttt",),
        created_at=now,
    )
    tokens = [
        NewOAuthToken(f"{digest}-access", "access", ("ifttt",), now + 3600),
        NewOAuthToken(f"{digest}-refresh", "refresh", ("ifttt",), None),
    ]
    assert await store.exchange_oauth_code(digest, "ifttt", grant, tokens, now) == "issued"
