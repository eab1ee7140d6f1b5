"""ActivityService: the log users read to see what happened, and its retention."""

from __future__ import annotations

from staterelay.core.clock import Clock
from staterelay.core.devices import require, require_device as require_device_access
from staterelay.core.errors import BadRequest, NotFound
from staterelay.core.ids import decode_cursor, encode_cursor
from staterelay.core.records import SOURCES, ActivityEntry, Page, Principal
from staterelay.core.storage import Store

DAY = 86400.0


class ActivityService:
    """Read the activity log and prune it."""

    def __init__(self, store: Store, clock: Clock, *, retention_days: int) -> None:
        self._store = store
        self._clock = clock
        self._retention_days = retention_days

    async def list(
        self,
        principal: Principal,
        *,
        device_id: str | None = None,
        source: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        require_device: bool = False,
    ) -> Page[ActivityEntry]:
        """Newest-first activity of the tenant, or of one of its devices.

        A device-scoped key sees only the activity of its devices.
        """
        require(principal, "read")
        if source is not None and source not in SOURCES:
            raise BadRequest(f"source must be one of {', '.join(SOURCES)}", field="source")
        if require_device and device_id is not None:
            require_device_access(principal, device_id)
            if await self._store.get_device(principal.tenant_id, device_id) is None:
                raise NotFound("no such device")
        before = decode_cursor("a", cursor)
        items = await self._store.list_activity(
            principal.tenant_id,
            device_id=device_id,
            device_ids=None if principal.device_ids is None else sorted(principal.device_ids),
            source=source,
            before_id=before,
            limit=limit + 1,
        )
        more = len(items) > limit
        items = items[:limit]
        next_cursor = encode_cursor("a", items[-1].id) if more and items else None
        return Page(items=tuple(items), next_cursor=next_cursor)

    async def prune(self) -> int:
        """Delete activity older than the retention period; returns rows removed."""
        return await self._store.prune_activity(self._clock() - self._retention_days * DAY)
