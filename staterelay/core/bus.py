"""The in-process event bus: subscribers run as tracked tasks and never slow the publisher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

_LOGGER = logging.getLogger(__name__)

E = TypeVar("E")
Handler = Callable[[Any], Awaitable[None] | None]


class EventBus(Protocol):
    """Publish events to subscribers of their type."""

    def publish(self, event: object) -> None:
        """Hand an event to every subscriber of its type; returns at once."""

    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Call ``handler`` for every event of ``event_type``; returns the unsubscribe function."""

    async def drain(self) -> None:
        """Wait until every handler started so far has finished."""

    async def close(self) -> None:
        """Cancel running handlers."""


class InProcessBus:
    """``EventBus`` inside one process.

    Synchronous handlers run inline (they must be quick, like pushing onto a queue);
    coroutine handlers run as tasks, so a slow subscriber cannot delay a request.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Any], list[Handler]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def publish(self, event: object) -> None:
        """Deliver ``event`` to the subscribers of its exact type."""
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                result = handler(event)
            except Exception:
                _LOGGER.exception("event handler %r failed on %s", handler, type(event).__name__)
                continue
            if result is not None:
                task = asyncio.ensure_future(self._guard(result, handler, event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(result: Awaitable[None], handler: Handler, event: object) -> None:
        try:
            await result
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("event handler %r failed on %s", handler, type(event).__name__)

    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Register ``handler``; the returned function removes it."""
        handlers = self._handlers.setdefault(event_type, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    async def drain(self) -> None:
        """Wait for running handler tasks."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel running handler tasks."""
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        self._handlers.clear()
