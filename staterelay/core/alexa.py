"""AlexaLinkService: per-user Login with Amazon grants, their tokens and their health.

The Alexa adapter exchanges codes and refreshes tokens over HTTP; this service keeps what
comes back (encrypted at rest), answers who is linked, and remembers how the last event
sent to Alexa fared so users can see it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, get_args

from staterelay.core.clock import Clock
from staterelay.core.crypto import SecretBox
from staterelay.core.devices import require, require_account_access, require_whole_household
from staterelay.core.errors import InvalidInput
from staterelay.core.facts import InstanceFacts
from staterelay.core.ids import new_id
from staterelay.core.records import Device, Principal
from staterelay.core.records.alexa import AlexaGrant, AlexaRegion, AlexaReportNote
from staterelay.core.storage import Store
from staterelay.settings import AlexaSettings

_LOGGER = logging.getLogger(__name__)

REGIONS: Final[tuple[str, ...]] = get_args(AlexaRegion)
ERROR_MAX: Final = 300
UNLINKED_IN_STATERELAY: Final = "the Alexa linked app was revoked in StateRelay"
MESSAGING_KEY: Final = "alexa:messaging"
MESSAGING_ID: Final = re.compile(r"amzn1\.application-oa2-client\.[A-Za-z0-9]{8,64}")


@dataclass(frozen=True, slots=True)
class MessagingClient:
    """The skill's Alexa Skill Messaging client (Send Alexa Events)."""

    client_id: str
    client_secret: str = field(repr=False)
    from_config: bool = False


@dataclass(frozen=True, slots=True)
class AlexaLink:
    """An active grant with its tokens in the clear, for the adapter that sends events."""

    grant_id: str
    tenant_id: str
    user_id: str
    region: AlexaRegion
    access_token: str
    refresh_token: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class AlexaStatus:
    """What a user sees of their Alexa link."""

    linked: bool
    region: AlexaRegion | None
    linked_at: float | None
    token_expires_at: float | None
    token_refreshed_at: float | None
    token_error: str | None
    token_error_at: float | None
    last_report_at: float | None
    last_report_status: int | None
    last_report_error: str | None
    unlinked_at: float | None
    unlinked_reason: str | None


NOT_LINKED: Final = AlexaStatus(
    linked=False,
    region=None,
    linked_at=None,
    token_expires_at=None,
    token_refreshed_at=None,
    token_error=None,
    token_error_at=None,
    last_report_at=None,
    last_report_status=None,
    last_report_error=None,
    unlinked_at=None,
    unlinked_reason=None,
)


def check_region(region: str) -> AlexaRegion:
    """``NA``, ``EU`` or ``FE``; ``InvalidInput`` otherwise."""
    if region not in REGIONS:
        raise InvalidInput(f"region must be one of {', '.join(REGIONS)}", field="region")
    return region  # type: ignore[return-value]


class AlexaLinkService:
    """Grants from AcceptGrant, token storage and refresh bookkeeping, link status."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        box: SecretBox,
        *,
        settings: AlexaSettings | None = None,
        facts: InstanceFacts | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._box = box
        self._settings = settings or AlexaSettings()
        self._facts = facts or InstanceFacts(store, clock)
        self._reports: dict[str, AlexaReportNote] = {}

    # the skill's Alexa Skill Messaging client ------------------------------------------------
    async def messaging(self) -> MessagingClient | None:
        """The messaging client id and secret: from the config, else as saved in Settings."""
        config = self._settings
        if config.messaging_client_id and config.messaging_client_secret:
            return MessagingClient(config.messaging_client_id, config.messaging_client_secret, True)
        sealed = await self._facts.get(MESSAGING_KEY)
        if sealed is None:
            return None
        try:
            client_id, _, secret = self._box.decrypt(sealed).partition("\n")
        except ValueError:
            _LOGGER.warning(
                "the saved Alexa messaging credentials cannot be read; enter them again"
            )
            return None
        return MessagingClient(client_id, secret, False) if client_id and secret else None

    async def save_messaging(self, principal: Principal, client_id: str, secret: str) -> None:
        """Keep the messaging client (sealed); the config's, when set, still wins."""
        require_account_access(principal, "write")
        clean_id, clean_secret = client_id.strip(), secret.strip()
        if not MESSAGING_ID.fullmatch(clean_id):
            raise InvalidInput(
                "the Alexa Client Id starts with amzn1.application-oa2-client.", field="client_id"
            )
        if not 16 <= len(clean_secret) <= 256 or not clean_secret.isprintable():
            raise InvalidInput(
                "paste the Alexa Client Secret shown under Send Alexa Events", field="client_secret"
            )
        await self._facts.put(MESSAGING_KEY, self._box.encrypt(f"{clean_id}\n{clean_secret}"))

    async def user_link(self, principal: Principal) -> AlexaLink | None:
        """The principal's user's active link, with its tokens; None when not linked."""
        grant = await self._store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
        if grant is None or grant.status != "active":
            return None
        return self._open(grant)

    async def link(
        self,
        principal: Principal,
        *,
        access_token: str,
        refresh_token: str,
        expires_in: float,
        region: str,
    ) -> AlexaLink:
        """Keep the tokens Login with Amazon gave for the principal's user (replaces any)."""
        require(principal, "read")
        now = self._clock()
        grant = AlexaGrant(
            id=new_id("alx"),
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            region=check_region(region),
            status="active",
            access_token_ciphertext=self._box.encrypt(access_token),
            refresh_token_ciphertext=self._box.encrypt(refresh_token),
            token_expires_at=now + expires_in,
            linked_at=now,
            refreshed_at=now,
            oauth_grant_id=principal.credential_id if principal.credential == "oauth" else None,
        )
        stored = await self._store.save_alexa_grant(grant)
        return self._open(stored)

    async def active_link(self, tenant_id: str, grant_id: str) -> AlexaLink | None:
        """The grant's tokens, or None when it is gone or unlinked.

        A grant whose linked app was revoked (by any path) is unlinked here at the latest,
        so nothing more is sent to Alexa for it.
        """
        grant = await self._store.get_alexa_grant(tenant_id, grant_id)
        if grant is None or grant.status != "active":
            return None
        if grant.oauth_grant_revoked:
            await self.unlink(tenant_id, grant_id, UNLINKED_IN_STATERELAY)
            return None
        return self._open(grant)

    async def linked_app_revoked(
        self, tenant_id: str, user_id: str, oauth_grant_id: str, *, alexa_client: bool
    ) -> bool:
        """A linked app (OAuth grant) of the user was revoked: end the Alexa link it made.

        ``alexa_client`` says the app is the Alexa skill's client; it decides for grants
        made before the linked app was remembered with them. True when a link ended.
        """
        grant = await self._store.find_user_alexa_grant(tenant_id, user_id)
        if grant is None or grant.status != "active":
            return False
        if grant.oauth_grant_id != oauth_grant_id and not (
            grant.oauth_grant_id is None and alexa_client
        ):
            return False
        return await self.unlink(tenant_id, grant.id, UNLINKED_IN_STATERELAY)

    async def save_refreshed(
        self, link: AlexaLink, *, access_token: str, refresh_token: str, expires_in: float
    ) -> AlexaLink | None:
        """Store refreshed tokens; None when the grant was unlinked meanwhile."""
        now = self._clock()
        expires_at = now + expires_in
        stored = await self._store.update_alexa_tokens(
            link.tenant_id,
            link.grant_id,
            access_token_ciphertext=self._box.encrypt(access_token),
            refresh_token_ciphertext=self._box.encrypt(refresh_token),
            expires_at=expires_at,
            refreshed_at=now,
        )
        if not stored:
            return None
        return AlexaLink(
            grant_id=link.grant_id,
            tenant_id=link.tenant_id,
            user_id=link.user_id,
            region=link.region,
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=expires_at,
        )

    async def note_token_error(self, link: AlexaLink, error: str) -> None:
        """Remember a failed token refresh (or a token the gateway refused)."""
        await self._store.note_alexa_token_error(
            link.tenant_id, link.grant_id, error[:ERROR_MAX], self._clock()
        )

    async def unlink(self, tenant_id: str, grant_id: str, reason: str) -> bool:
        """Stop sending to Alexa for this grant: tokens and pending events are dropped."""
        self._reports.pop(grant_id, None)
        return await self._store.unlink_alexa_grant(
            tenant_id, grant_id, reason[:ERROR_MAX], self._clock()
        )

    async def unlink_user(self, principal: Principal, reason: str) -> AlexaGrant | None:
        """The principal's user unlinks Alexa (the dashboard's button); the grant that ended,
        or None when not linked. The caller revokes its linked app too."""
        require(principal, "write")
        grant = await self._store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
        if grant is None or grant.status != "active":
            return None
        if not await self.unlink(principal.tenant_id, grant.id, reason):
            return None
        return grant

    async def device(self, link: AlexaLink, device_id: str) -> Device | None:
        """A device as the grant's user sees it now; None once deleted."""
        return await self._store.get_device(link.tenant_id, device_id)

    def note_report(
        self, tenant_id: str, grant_id: str, status_code: int | None, error: str | None
    ) -> None:
        """Remember the result of an event sent for a grant; written by ``flush_reports``."""
        self._reports[grant_id] = AlexaReportNote(
            tenant_id=tenant_id,
            grant_id=grant_id,
            at=self._clock(),
            status_code=status_code,
            error=None if error is None else error[:ERROR_MAX],
        )

    async def flush_reports(self) -> int:
        """Write the remembered report results; returns how many grants were written."""
        if not self._reports:
            return 0
        notes: Sequence[AlexaReportNote] = list(self._reports.values())
        self._reports = {}
        await self._store.record_alexa_reports(notes)
        return len(notes)

    async def status(self, principal: Principal) -> AlexaStatus:
        """The principal's user's link: region, token health and the last report's result."""
        require(principal, "read")
        require_whole_household(principal, "read the account's integrations")
        grant = await self._store.find_user_alexa_grant(principal.tenant_id, principal.user_id)
        if grant is None:
            return NOT_LINKED
        note = self._reports.get(grant.id)
        if note is None and grant.last_report_at is not None:
            note = AlexaReportNote(
                tenant_id=grant.tenant_id,
                grant_id=grant.id,
                at=grant.last_report_at,
                status_code=grant.last_report_status,
                error=grant.last_report_error,
            )
        return AlexaStatus(
            linked=grant.status == "active",
            region=grant.region,
            linked_at=grant.linked_at,
            token_expires_at=grant.token_expires_at,
            token_refreshed_at=grant.refreshed_at,
            token_error=grant.token_error,
            token_error_at=grant.token_error_at,
            last_report_at=None if note is None else note.at,
            last_report_status=None if note is None else note.status_code,
            last_report_error=None if note is None else note.error,
            unlinked_at=grant.unlinked_at,
            unlinked_reason=grant.unlinked_reason,
        )

    def _open(self, grant: AlexaGrant) -> AlexaLink:
        assert grant.access_token_ciphertext is not None
        assert grant.refresh_token_ciphertext is not None
        assert grant.token_expires_at is not None
        return AlexaLink(
            grant_id=grant.id,
            tenant_id=grant.tenant_id,
            user_id=grant.user_id,
            region=grant.region,
            access_token=self._box.decrypt(grant.access_token_ciphertext),
            refresh_token=self._box.decrypt(grant.refresh_token_ciphertext),
            expires_at=grant.token_expires_at,
        )
