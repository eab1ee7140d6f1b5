"""Which household the bridge serves: the one ``mqtt.household`` names, or the only one."""

from __future__ import annotations

from dataclasses import dataclass

from staterelay.core import Core
from staterelay.core.errors import NotFound
from staterelay.core.records import Principal


class HouseholdUnresolved(Exception):
    """The household cannot be told (none yet, several, or no user with the email)."""


@dataclass(slots=True)
class Served:
    """The household the bridge serves once it is known; the policy and the bridge share it.

    ``tenant_id`` is None until the household is resolved; ``problem`` says why it is not.
    """

    tenant_id: str | None = None
    problem: str | None = None


async def resolve(core: Core, email: str | None) -> str:
    """The tenant id of the household ``email``'s user belongs to, or of the only household."""
    if email:
        try:
            user = await core.users.by_email(email)
        except NotFound:
            raise HouseholdUnresolved(f"mqtt.household: no user has the email {email}") from None
        return user.tenant_id
    tenants = sorted({user.tenant_id for user in await core.recovery.users()})
    if not tenants:
        raise HouseholdUnresolved("there is no household yet: the bridge starts with the first")
    if len(tenants) > 1:
        raise HouseholdUnresolved(
            f"this instance has {len(tenants)} households: set mqtt.household to the email"
            " of a user of the one the bridge serves"
        )
    return tenants[0]


def bridge_principal(tenant_id: str) -> Principal:
    """Who the bridge acts as in its household: read and write, named ``mqtt:bridge``."""
    return Principal(
        tenant_id=tenant_id,
        user_id="",
        scopes=frozenset({"read", "write"}),
        credential="mqtt",
        credential_id="bridge",
    )
