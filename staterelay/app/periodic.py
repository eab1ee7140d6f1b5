"""The one runner of periodic work: every ``PeriodicTask`` of core, OAuth and the integrations.

Each task gets an asyncio task of its own, so a slow prune never delays a flush that is due
every few seconds. A task that fails is logged with its name and runs again at its next
turn; nothing but cancellation (``stop``) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from staterelay.app.integration import PeriodicTask

_LOGGER = logging.getLogger(__name__)


class PeriodicRunner:
    """Runs its tasks from ``start`` until ``stop``."""

    def __init__(self, tasks: Sequence[PeriodicTask]) -> None:
        names = [task.name for task in tasks]
        repeated = {name for name in names if names.count(name) > 1}
        if repeated:
            raise ValueError(f"periodic tasks share a name: {', '.join(sorted(repeated))}")
        self.tasks = tuple(tasks)
        self._running: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every task (inside the running loop)."""
        if self._running:
            raise RuntimeError("the periodic tasks are running already")
        self._running = [
            asyncio.create_task(_repeat(task), name=f"periodic:{task.name}") for task in self.tasks
        ]

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _repeat(task: PeriodicTask) -> None:
    if task.wait_first:
        await asyncio.sleep(task.interval)
    while True:
        try:
            await task.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("periodic task %s failed", task.name)
        await asyncio.sleep(task.interval)
