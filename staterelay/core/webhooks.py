"""WebhookService: users' webhook endpoints, their signing secrets and delivery history."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from staterelay.core.billing import BillingService
from staterelay.core.bus import EventBus
from staterelay.core.clock import Clock, iso
from staterelay.core.crypto import SecretBox
from staterelay.core.delivery import BUILT_IN_POLICIES, DeliveryPlanner
from staterelay.core.device_types import has_control_characters, require_text
from staterelay.core.devices import require_account_access
from staterelay.core.errors import InvalidInput, NotFound
from staterelay.core.events import OutboxEnqueued
from staterelay.core.ids import decode_cursor, encode_cursor, new_id
from staterelay.core.netpolicy import AddressPolicy, validate_webhook_url
from staterelay.core.records import NewOutboxEvent, Page, Principal, Webhook, WebhookDelivery
from staterelay.core.storage import Store
from staterelay.core.webhook_formats import IFTTT_WEBHOOKS, MAKER_URL, format_changes, maker_request

EVENT_TYPES = (
    "state.changed",
    "button.pressed",
    "device.created",
    "device.updated",
    "device.deleted",
)
TEST_EVENT = "webhook.test"
DESCRIPTION_MAX = 256
MAX_WEBHOOKS_PER_TENANT = 50
SECRET_PREFIX = "whsec_"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class WebhookService:
    """Create, change and inspect webhooks; hand the dispatcher what it needs to sign."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        box: SecretBox,
        policy: AddressPolicy,
        *,
        planner: DeliveryPlanner | None = None,
        billing: BillingService | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._billing = billing if billing is not None and billing.enabled else None
        self._box = box
        self.policy = policy
        self._plan = (planner or DeliveryPlanner(BUILT_IN_POLICIES)).plan

    async def create(self, principal: Principal, fields: Mapping[str, Any]) -> tuple[Webhook, str]:
        """Create a webhook; returns it and its signing secret, which is shown only once."""
        require_account_access(principal, "write")
        existing = await self._store.list_webhooks(
            principal.tenant_id, after_seq=None, limit=MAX_WEBHOOKS_PER_TENANT
        )
        if len(existing) >= MAX_WEBHOOKS_PER_TENANT:
            raise InvalidInput(f"a household can have at most {MAX_WEBHOOKS_PER_TENANT} webhooks")
        if self._billing is not None:
            await self._billing.check_new_webhook(principal.tenant_id, len(existing))
        formats = format_changes(fields, None, self._box)
        if "url" not in fields and formats.get("format") != IFTTT_WEBHOOKS:
            raise InvalidInput("url is required", field="url")
        url = validate_webhook_url(fields.get("url", MAKER_URL), self.policy)
        description = _description(fields.get("description"))
        device_ids = await self._device_ids(principal, fields.get("device_ids"))
        event_types = _event_types(fields.get("event_types"))
        enabled = _flag(fields.get("enabled", True), "enabled")
        secret = new_signing_secret()
        now = self._clock()
        webhook = Webhook(
            seq=0,
            id=new_id("whk"),
            tenant_id=principal.tenant_id,
            url=url,
            description=description,
            device_ids=device_ids,
            event_types=event_types,
            enabled=enabled,
            secret_ciphertext=self._box.encrypt(secret),
            created_at=now,
            updated_at=now,
            **formats,
        )
        return await self._store.create_webhook(webhook), secret

    async def get(self, principal: Principal, webhook_id: str) -> Webhook:
        """One webhook of the tenant."""
        require_account_access(principal, "read")
        webhook = await self._store.get_webhook(principal.tenant_id, webhook_id)
        if webhook is None:
            raise NotFound("no such webhook")
        return webhook

    async def list(
        self, principal: Principal, *, cursor: str | None = None, limit: int = 50
    ) -> Page[Webhook]:
        """The tenant's webhooks."""
        require_account_access(principal, "read")
        after = decode_cursor("w", cursor)
        items = await self._store.list_webhooks(
            principal.tenant_id, after_seq=after, limit=limit + 1
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(
            items=tuple(items),
            next_cursor=encode_cursor("w", items[-1].seq) if more and items else None,
        )

    async def update(
        self, principal: Principal, webhook_id: str, fields: Mapping[str, Any]
    ) -> Webhook:
        """Change a webhook's URL, filters, description, format or enabled flag."""
        require_account_access(principal, "write")
        changes: dict[str, Any] = {}
        if "url" in fields:
            changes["url"] = validate_webhook_url(fields["url"], self.policy)
        if "description" in fields:
            changes["description"] = _description(fields["description"])
        if "device_ids" in fields:
            changes["device_ids"] = await self._device_ids(principal, fields["device_ids"])
        if "event_types" in fields:
            changes["event_types"] = _event_types(fields["event_types"])
        if "enabled" in fields:
            changes["enabled"] = _flag(fields["enabled"], "enabled")
            if changes["enabled"]:
                changes["disabled_reason"] = None
        now = self._clock()

        def mutate(current: Webhook) -> Webhook:
            formats = format_changes(fields, current, self._box)
            return replace(current, **changes, **formats, updated_at=now)

        return await self._store.update_webhook(principal.tenant_id, webhook_id, mutate)

    async def delete(self, principal: Principal, webhook_id: str) -> None:
        """Delete a webhook and drop what is queued for it."""
        require_account_access(principal, "write")
        if not await self._store.delete_webhook(principal.tenant_id, webhook_id):
            raise NotFound("no such webhook")

    async def send_test(self, principal: Principal, webhook_id: str) -> None:
        """Queue a ``webhook.test`` event for one webhook (enabled or not is checked)."""
        require_account_access(principal, "write")
        webhook = await self.get(principal, webhook_id)
        if not webhook.enabled:
            raise InvalidInput("the webhook is disabled; enable it first", field="enabled")
        event = NewOutboxEvent(
            event_type=TEST_EVENT,
            device_id=None,
            payload={"message": "a test event from StateRelay", "timestamp": iso(self._clock())},
            only_destination=webhook.id,
        )
        rows = await self._store.enqueue_events(
            principal.tenant_id, (event,), self._clock(), plan=self._plan
        )
        if rows:
            self._bus.publish(OutboxEnqueued(rows=rows))

    async def deliveries(
        self, principal: Principal, webhook_id: str, *, cursor: str | None, limit: int
    ) -> Page[WebhookDelivery]:
        """A webhook's delivery attempts, newest first."""
        await self.get(principal, webhook_id)
        before = decode_cursor("h", cursor)
        items = await self._store.list_webhook_deliveries(
            principal.tenant_id, webhook_id, before_id=before, limit=limit + 1
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(
            items=tuple(items),
            next_cursor=encode_cursor("h", items[-1].id) if more and items else None,
        )

    # for the dispatcher ------------------------------------------------------------------------
    async def target(self, tenant_id: str, webhook_id: str) -> tuple[Webhook, str] | None:
        """The webhook and its plaintext secret, for signing a delivery; None when gone."""
        webhook = await self._store.get_webhook(tenant_id, webhook_id)
        if webhook is None:
            return None
        return webhook, self._box.decrypt(webhook.secret_ciphertext)

    def maker_request(
        self, webhook: Webhook, event_type: str, payload: Mapping[str, Any]
    ) -> tuple[str, bytes] | None:
        """URL and body of an ``ifttt_webhooks`` delivery; None when its key is missing."""
        if webhook.ifttt_key_ciphertext is None or not webhook.ifttt_event:
            return None
        key = self._box.decrypt(webhook.ifttt_key_ciphertext)
        return maker_request(webhook, key, event_type, payload)

    async def disable(self, tenant_id: str, webhook_id: str, reason: str) -> None:
        """Switch a webhook off (its receiver answered 410 Gone, say)."""
        now = self._clock()
        try:
            await self._store.update_webhook(
                tenant_id,
                webhook_id,
                lambda current: replace(
                    current, enabled=False, disabled_reason=reason, updated_at=now
                ),
            )
        except NotFound:
            return

    async def _device_ids(self, principal: Principal, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(
                "device_ids must be a list of device ids or null", field="device_ids"
            )
        if len(value) > 300:
            raise InvalidInput("device_ids may name at most 300 devices", field="device_ids")
        for device_id in value:
            if await self._store.get_device(principal.tenant_id, device_id) is None:
                raise InvalidInput(f"no device {device_id!r} in this household", field="device_ids")
        return tuple(dict.fromkeys(value))


def _description(value: Any) -> str:
    if value is None:
        return ""
    text = require_text(value, "description").strip()
    if len(text) > DESCRIPTION_MAX:
        raise InvalidInput(
            f"description must be at most {DESCRIPTION_MAX} characters", field="description"
        )
    if has_control_characters(text):
        raise InvalidInput("description must not contain control characters", field="description")
    return text


def _event_types(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in EVENT_TYPES for v in value)
    ):
        raise InvalidInput(
            f"event_types must be null or a non-empty list of: {', '.join(EVENT_TYPES)}",
            field="event_types",
        )
    return tuple(dict.fromkeys(value))


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", field=name)
    return value


def event_types_known() -> Sequence[str]:
    """The event types a webhook can subscribe to."""
    return EVENT_TYPES
