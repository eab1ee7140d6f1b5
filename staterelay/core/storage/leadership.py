"""The leadership part of the store interface: one process among replicas does a job.

A job that must run exactly once per deployment (the MQTT bridge's one broker connection)
asks the store to lead it. The process that gets the lead keeps it until it releases it
or loses its hold on the database; every other process asks again later.
"""

from __future__ import annotations

from typing import Protocol


class Lead(Protocol):
    """A lead this process holds."""

    async def lost(self) -> None:
        """Return when the lead is lost (the hold on the database broke); may wait forever."""

    async def release(self) -> None:
        """Give the lead up, so another process can take it; never raises."""


class LeadershipStore(Protocol):
    """Leadership among every process sharing the database."""

    async def try_lead(self, name: str) -> Lead | None:
        """Lead the job ``name``, or None when another process leads it now."""
