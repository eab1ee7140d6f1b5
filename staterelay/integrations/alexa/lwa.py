"""Login with Amazon: code exchange, and tokens refreshed in time.

Requests go through the application's shared client session (``OutgoingHttp.shared``), as
the event gateway's do. Tokens are refreshed ``REFRESH_AHEAD`` seconds before they expire,
under a lock per grant so concurrent sends refresh once, and the new refresh token Amazon
returns is stored every time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from staterelay.core import Core
from staterelay.core.alexa import AlexaLink, MessagingClient
from staterelay.jsoncodec import check_depth
from staterelay.settings import AlexaSettings

_LOGGER = logging.getLogger(__name__)

REFRESH_AHEAD: Final = 300.0  # seconds before expiry, as Amazon's own sample does
LWA_TIMEOUT: Final = aiohttp.ClientTimeout(total=4.0)
MAX_ANSWER_BYTES: Final = 65536
USER_AGENT: Final = "StateRelay (Alexa Smart Home)"


Session = Callable[[], aiohttp.ClientSession]
"""The client session to send with (``OutgoingHttp.shared``), opened on first use."""


class LwaError(Exception):
    """Login with Amazon refused or failed; ``code`` is its OAuth error or a transport fault."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def grant_revoked(self) -> bool:
        """True when the refresh token is dead: the user disabled the skill or unlinked."""
        return self.code == "invalid_grant"


@dataclass(frozen=True, slots=True)
class LwaTokens:
    """An access token, its refresh token and lifetime."""

    access_token: str
    refresh_token: str
    expires_in: float


class LoginWithAmazon:
    """The token endpoint, with the skill's Alexa Skill Messaging client credentials."""

    def __init__(
        self,
        session: Session,
        settings: AlexaSettings,
        credentials: Callable[[], Awaitable[MessagingClient | None]],
    ) -> None:
        self._session = session
        self._settings = settings
        self._credentials = credentials

    async def exchange_code(self, code: str) -> LwaTokens:
        """Trade AcceptGrant's authorization code for tokens."""
        return await self._token({"grant_type": "authorization_code", "code": code})

    async def refresh(self, refresh_token: str) -> LwaTokens:
        """New tokens for a refresh token."""
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _token(self, form: dict[str, str]) -> LwaTokens:
        client = await self._credentials()
        if client is None:
            raise LwaError(
                "the Alexa messaging client id and secret are not set (Integrations, Alexa, "
                "or alexa.messaging_client_id and alexa.messaging_client_secret)",
                code="not_configured",
            )
        data = {**form, "client_id": client.client_id, "client_secret": client.client_secret}
        try:
            async with self._session().post(
                self._settings.lwa_token_url,
                data=data,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=LWA_TIMEOUT,
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LwaError(
                f"Login with Amazon unreachable: {type(exc).__name__}", code="unreachable"
            ) from None
        body = _json_object(raw)
        if status != 200:
            code = str(body.get("error") or f"http_{status}")
            raise LwaError(f"Login with Amazon {status} {code}", code=code, status=status)
        access, refresh, expires_in = (
            body.get("access_token"),
            body.get("refresh_token"),
            body.get("expires_in"),
        )
        if (
            not isinstance(access, str)
            or not access
            or not isinstance(refresh, str)
            or not refresh
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or expires_in <= 0
        ):
            raise LwaError("Login with Amazon answered without usable tokens", code="bad_answer")
        return LwaTokens(access, refresh, float(expires_in))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        check_depth(raw)  # an answer nested absurdly deep is no token answer either
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class GrantGone(Exception):
    """The grant was unlinked (or replaced) while we were working with it."""


class TokenKeeper:
    """Valid LWA access tokens for grants: refreshed ahead of expiry, once at a time per grant."""

    def __init__(self, core: Core, lwa: LoginWithAmazon) -> None:
        self._core = core
        self._lwa = lwa
        self._locks: dict[str, asyncio.Lock] = {}

    async def access_token(self, link: AlexaLink, *, stale: str | None = None) -> AlexaLink:
        """``link`` with a token good for at least ``REFRESH_AHEAD`` seconds.

        ``stale`` is a token the gateway refused: it is refreshed even if not yet due.
        Raises ``GrantGone`` when the grant is unlinked, ``LwaError`` when refreshing failed;
        an ``invalid_grant`` answer unlinks the grant first.
        """
        if stale is None and not self._due(link):
            return link
        lock = self._locks.setdefault(link.grant_id, asyncio.Lock())
        async with lock:
            current = await self._core.alexa.active_link(link.tenant_id, link.grant_id)
            if current is None:
                raise GrantGone("Alexa is no longer linked for this user")
            if current.access_token != stale and not self._due(current):
                return current  # refreshed by someone else while we waited
            try:
                tokens = await self._lwa.refresh(current.refresh_token)
            except LwaError as exc:
                if exc.grant_revoked:
                    await self._core.alexa.unlink(
                        current.tenant_id,
                        current.grant_id,
                        "Login with Amazon refused the refresh token (invalid_grant): "
                        "the skill was disabled or unlinked",
                    )
                    raise GrantGone(str(exc)) from None
                await self._core.alexa.note_token_error(current, str(exc))
                raise
            refreshed = await self._core.alexa.save_refreshed(
                current,
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
                expires_in=tokens.expires_in,
            )
            if refreshed is None:
                raise GrantGone("Alexa is no longer linked for this user")
            _LOGGER.info("refreshed the Login with Amazon token of grant %s", link.grant_id)
            return refreshed

    def forget(self, grant_id: str) -> None:
        """Drop the lock of a grant that is gone."""
        lock = self._locks.get(grant_id)
        if lock is not None and not lock.locked():
            del self._locks[grant_id]

    def _due(self, link: AlexaLink) -> bool:
        return link.expires_at - self._core.clock() <= REFRESH_AHEAD
