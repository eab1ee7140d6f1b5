"""The Alexa set-up page's "send a test event": one AddOrUpdateReport, sent right away.

It announces the user's devices to their Alexa account through the event gateway, as a
device change would, and answers with what the gateway said, so the page can show whether
events reach Alexa without anyone flipping a device (a Routine could start on that).
"""

from __future__ import annotations

import json
from typing import Final

import aiohttp

from staterelay.core import Core
from staterelay.core.records import Device, Principal
from staterelay.integrations.alexa.change_report import gateway_url
from staterelay.integrations.alexa.directive import header
from staterelay.integrations.alexa.endpoints import endpoints
from staterelay.integrations.alexa.lwa import USER_AGENT, GrantGone, LwaError, Session, TokenKeeper
from staterelay.settings import AlexaSettings

TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
PAGE: Final = 300


async def send_test_event(
    core: Core,
    settings: AlexaSettings,
    session: Session,
    tokens: TokenKeeper,
    principal: Principal,
) -> tuple[bool, str]:
    """(accepted, what happened, in a sentence) for the principal's user."""
    link = await core.alexa.user_link(principal)
    if link is None:
        return False, "Alexa is not linked to your account yet (step 8)."
    try:
        link = await tokens.access_token(link)
    except GrantGone:
        return False, "Alexa unlinked your account: enable the skill again in the Alexa app."
    except LwaError as exc:
        return False, f"Login with Amazon refused a new token: {exc}."
    devices: list[Device] = []
    cursor: str | None = None
    while True:
        page = await core.devices.list(principal, cursor=cursor, limit=PAGE)
        devices.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    found = endpoints(devices)
    if not found:
        return False, "Make a device first: the test event announces your devices to Alexa."
    message = {
        "event": {
            "header": header("Alexa.Discovery", "AddOrUpdateReport"),
            "payload": {
                "endpoints": found,
                "scope": {"type": "BearerToken", "token": link.access_token},
            },
        }
    }
    try:
        async with session().post(
            gateway_url(settings, link.region),
            data=json.dumps(message, separators=(",", ":")),
            headers={
                "Authorization": f"Bearer {link.access_token}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=TIMEOUT,
            allow_redirects=False,
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"Alexa event gateway unreachable: {type(exc).__name__}"
        core.alexa.note_report(link.tenant_id, link.grant_id, None, error)
        return False, error + "."
    accepted = 200 <= status < 300
    core.alexa.note_report(
        link.tenant_id, link.grant_id, status, None if accepted else f"Alexa {status}"
    )
    if accepted:
        count = f"{len(found)} device{'s' if len(found) != 1 else ''}"
        return True, f"Alexa accepted the test event ({status}): {count} announced."
    return False, f"Alexa answered {status} to the test event."
