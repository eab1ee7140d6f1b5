"""Link a bench user to an OAuth client, as Alexa or IFTTT would, and return the access token.

The Alexa and IFTTT endpoints take only a linked app's OAuth token, never a personal API
key. The benches mint one through core directly, before the server starts, instead of
driving a browser through the consent page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from staterelay.app.assemble import build_core
from staterelay.core.crypto import load_or_create_secret
from staterelay.core.oauth import NewCode
from staterelay.settings import load_settings

REDIRECT_URI = "https://bench.example.com/callback"


def oauth_token(data_dir: Path, email: str, *, client_id: str, scopes: tuple[str, ...]) -> str:
    """An access token of ``client_id`` (registered if needed) for the user ``email``."""
    return asyncio.run(_link(data_dir, email, client_id, scopes))


async def _link(data_dir: Path, email: str, client_id: str, scopes: tuple[str, ...]) -> str:
    settings = load_settings(data_dir=data_dir)
    core = build_core(settings, instance_secret=load_or_create_secret(settings.secret_key_path))
    await core.store.open()
    try:
        if await core.oauth.get_client(client_id) is None:
            await core.oauth.create_client(
                client_id=client_id,
                name=f"Bench {client_id}",
                redirect_uris=[REDIRECT_URI],
                token_endpoint_auth_method="client_secret_basic",
                scopes=list(scopes),
            )
        user = await core.users.by_email(email)
        code = core.oauth.new_code()
        await core.oauth.save_code(
            code,
            NewCode(
                client_id=client_id,
                tenant_id=user.tenant_id,
                user_id=user.id,
                redirect_uri=REDIRECT_URI,
                redirect_uri_given=True,
                scopes=scopes,
            ),
        )
        stored = await core.oauth.find_code(code)
        assert stored is not None
        tokens = core.oauth.issue_tokens(scopes)
        if not await core.oauth.exchange_code(stored, tokens):
            raise RuntimeError("the bench could not link its OAuth client")
        return tokens.access_token
    finally:
        await core.store.close()
