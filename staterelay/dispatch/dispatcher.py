"""The Dispatcher: claims due outbox rows, hands them to sinks and records every result.

The store hands out only the oldest pending row of each ordering key (an Alexa endpoint of
one linked user, an IFTTT user, a webhook's view of one device), so rows of a key reach
their destination one at a time and in commit order; a row waiting for its retry holds
back the rows of its key behind it, and no other key.

One loop claims rows with a lease, a task per row delivers it (at most
``concurrency_per_destination`` at a time per sink and destination, at most
``max_in_flight`` in all), and one recorder writes the results in batches. Rows are never
held in a database transaction while they are sent; a process that dies leaves leases that
expire (or, on single-process SQLite, are released when the next process starts), so every
row is delivered at least once.

While rows are claimed and not yet recorded (queued behind a slow destination, being sent,
or waiting for the recorder) a renewer extends their leases every third of the lease, so
another replica does not claim and send them too. A row whose lease was lost anyway (this
process stalled, or the database was unreachable) is not sent here, and a late result for
it is not recorded over the new owner's (the store writes only rows still leased to us).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from staterelay.core import Core
from staterelay.core.clock import iso
from staterelay.core.records import DeliveryOutcome, NewActivity, OutboxItem
from staterelay.core.sinks import Sink, SinkResult
from staterelay.dispatch.backoff import retry_delay

_LOGGER = logging.getLogger(__name__)

MIN_IDLE: Final = 0.05
RECORD_BATCH: Final = 200
DB_BUDGET: Final = 5.0
RENEW_EVERY: Final = 1 / 3
"""Leases are renewed every this fraction of ``lease_seconds``."""
SEND_MARGIN: Final = 1 / 6
"""A row is sent only while at least this fraction of ``lease_seconds`` of its lease is left."""
MIN_RETRY_AFTER: Final = 0.25
PARK_SECONDS: Final = 0.5
"""How long a row of a sink that cannot send in this process stays leased here before
another process may claim it (``Sink.ready``). Short: when it ends, every deliverer may
claim the row again, and the one that can send it must get its turn soon."""
"""The shortest wait a receiver's ``Retry-After`` can ask for (``0`` would spin)."""


@dataclass(frozen=True)
class DispatcherConfig:
    """Dispatcher tuning: leases, retry schedule, limits and the shutdown budget."""

    owner: str
    max_age_seconds: float = 72 * 3600.0
    max_attempts: int = 20
    concurrency_per_destination: int = 2
    release_all_on_start: bool = True
    lease_seconds: float = 60.0
    first_retry_seconds: float | None = None  # None: the first retry backs off like the rest
    retry_base_seconds: float = 2.0
    retry_factor: float = 3.0
    retry_cap_seconds: float = 6 * 3600.0
    max_in_flight: int = 100
    batch_size: int = 100
    poll_seconds: float = 5.0
    stop_timeout_seconds: float = 5.0
    trip_seconds: float = 2.0

    def __post_init__(self) -> None:
        """Refuse settings that would stall the dispatcher or spin it."""
        whole = ("max_attempts", "concurrency_per_destination", "max_in_flight", "batch_size")
        for name in whole:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        positive = ("max_age_seconds", "lease_seconds", "retry_base_seconds", "poll_seconds")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not self.retry_factor >= 1 or not self.retry_cap_seconds >= self.retry_base_seconds:
            raise ValueError(
                "retry_factor must be >= 1 and retry_cap_seconds >= retry_base_seconds"
            )
        if self.first_retry_seconds is not None and not self.first_retry_seconds > 0:
            raise ValueError("first_retry_seconds must be positive")
        if self.stop_timeout_seconds < 0 or self.trip_seconds < 0:
            raise ValueError("stop_timeout_seconds and trip_seconds must not be negative")


class _Lane:
    """The queue of one sink and destination: its concurrency limit and recent breakage."""

    __slots__ = ("semaphore", "trip_error", "tripped_at", "users")

    def __init__(self, concurrency: int) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.users = 0
        self.tripped_at = -math.inf  # when an attempt last failed without an answer
        self.trip_error: str | None = None


class _Hold:
    """A row claimed and not yet recorded: its lease end (core clock) as far as we know."""

    __slots__ = ("done", "lease_until", "lost")

    def __init__(self, lease_until: float) -> None:
        self.lease_until = lease_until
        self.lost = False  # another owner took the row: it must not be sent here
        self.done = False  # attempted; its outcome waits for the recorder


class Dispatcher:
    """Deliver the outbox through pluggable sinks, retrying with backoff until delivered or dead."""

    def __init__(self, core: Core, sinks: Mapping[str, Sink], *, config: DispatcherConfig) -> None:
        self._core = core
        self._sinks = dict(sinks)
        self._config = config
        self._wakeup = asyncio.Event()
        self._outcomes: asyncio.Queue[DeliveryOutcome] = asyncio.Queue()
        self._claimed: dict[int, _Hold] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def config(self) -> DispatcherConfig:
        """The configuration this dispatcher runs with."""
        return self._config

    @property
    def in_flight(self) -> int:
        """Rows claimed and not yet recorded."""
        return len(self._claimed)

    async def start(self) -> None:
        """Free stale leases if configured, then start claiming and recording."""
        if self._loop_task is not None:
            return
        if self._config.release_all_on_start:
            released = await self._core.outbox.release(None)
            if released:
                _LOGGER.info("released %d outbox leases left by a previous process", released)
        self._recorder_task = asyncio.create_task(self._record_loop(), name="outbox-recorder")
        self._renew_task = asyncio.create_task(self._renew_loop(), name="outbox-lease-renewer")
        self._loop_task = asyncio.create_task(self._claim_loop(), name="outbox-dispatcher")

    def wake(self) -> None:
        """Look for due rows now (new rows were enqueued)."""
        if not self._stopping:
            self._wakeup.set()

    async def stop(self) -> None:
        """Stop claiming, let deliveries finish within the budget, record them, free leases."""
        if self._loop_task is None or self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        deadline = time.monotonic() + self._config.stop_timeout_seconds
        await _finish(self._loop_task, _left(deadline))
        if self._deliveries:
            _, late = await asyncio.wait(tuple(self._deliveries), timeout=_left(deadline))
            for task in late:
                task.cancel()
            if late:
                _LOGGER.warning("cancelled %d deliveries still running at shutdown", len(late))
                await asyncio.wait(late, timeout=1.0)
        try:
            await asyncio.wait_for(self._outcomes.join(), DB_BUDGET)
        except TimeoutError:
            _LOGGER.warning("shutdown: %d delivery results not recorded", self._outcomes.qsize())
        if self._recorder_task is not None:
            await _finish(self._recorder_task, 0.0)
        if self._renew_task is not None:
            await _finish(self._renew_task, 0.0)
        try:
            await asyncio.wait_for(self._core.outbox.release(self._config.owner), DB_BUDGET)
        except Exception:
            _LOGGER.exception("shutdown: could not release outbox leases")

    # claiming ---------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            try:
                if self._config.max_in_flight - len(self._claimed) > 0:
                    full, due = await self._claim_batch()
                    if full:
                        continue
                    delay = self._idle_delay(due)
                else:
                    delay = self._config.poll_seconds  # a finished delivery wakes us
            except Exception:
                _LOGGER.exception("outbox dispatcher step failed")
                delay = self._config.poll_seconds
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    async def _claim_batch(self) -> tuple[bool, float | None]:
        """Claim and start what is due: (the batch was full, so more may be due; when the
        next row falls due), from one call."""
        limit = min(self._config.batch_size, self._config.max_in_flight - len(self._claimed))
        lease_until = self._core.clock() + self._config.lease_seconds
        claim = await self._core.outbox.claim(
            self._config.owner, lease_seconds=self._config.lease_seconds, limit=limit
        )
        items = claim.items
        if self._stopping:
            return False, None  # stop() releases these leases
        for item in items:
            previous = self._claimed.get(item.id)
            hold = self._claimed[item.id] = _Hold(lease_until)
            if previous is not None:
                hold.done = previous.done
                continue  # its lease ran out while it waited; the claim just renewed it
            task = asyncio.create_task(self._deliver(item), name=f"deliver-{item.id}")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        return len(items) >= limit, claim.next_due

    def _idle_delay(self, due: float | None) -> float:
        if due is None:
            return self._config.poll_seconds
        return min(self._config.poll_seconds, max(MIN_IDLE, due - self._core.clock()))

    # renewing leases --------------------------------------------------------------------------
    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.lease_seconds * RENEW_EVERY)
            if self._claimed:
                try:
                    await self._renew()
                except Exception:
                    _LOGGER.exception("renewing outbox leases failed")

    async def _renew(self) -> None:
        """Extend the leases of every row held; mark the ones another owner took as lost."""
        held = dict(self._claimed)
        lease_until = self._core.clock() + self._config.lease_seconds
        kept = await self._core.outbox.renew(
            self._config.owner, list(held), lease_seconds=self._config.lease_seconds
        )
        lost = 0
        for row_id, hold in held.items():
            if self._claimed.get(row_id) is not hold or hold.done:
                continue  # recorded or claimed again meanwhile, or already attempted
            if row_id in kept:
                hold.lease_until = max(hold.lease_until, lease_until)
            elif not hold.lost:
                hold.lost = True
                lost += 1
        if lost:
            _LOGGER.warning(
                "%d outbox rows were taken by another deliverer after their leases ran out;"
                " they are left to it",
                lost,
            )

    def _holds(self, item: OutboxItem) -> bool:
        """True while this dispatcher may still send ``item``: its lease is ours, with time left."""
        hold = self._claimed.get(item.id)
        if hold is None or hold.lost:
            return False
        margin = self._config.lease_seconds * SEND_MARGIN
        return hold.lease_until - margin > self._core.clock()

    # delivering -------------------------------------------------------------------------------
    async def _deliver(self, item: OutboxItem) -> None:
        sink = self._sinks.get(item.sink)
        if sink is not None and not _ready(sink):
            await self._park(item)
            self._claimed.pop(item.id, None)
            return
        try:
            outcome = await self._attempt(item)
        except asyncio.CancelledError:
            self._claimed.pop(item.id, None)
            raise
        except Exception:
            _LOGGER.exception("delivering outbox row %d failed", item.id)
            self._claimed.pop(item.id, None)
            return
        if outcome is None:
            # Not sent: the lease is lost (or about to be); the row is left to whoever holds it.
            _LOGGER.info("outbox row %d not sent: its lease is no longer held", item.id)
            self._claimed.pop(item.id, None)
            self.wake()
            return
        hold = self._claimed.get(item.id)
        if hold is not None:
            hold.done = True
        self._outcomes.put_nowait(outcome)

    async def _attempt(self, item: OutboxItem) -> DeliveryOutcome | None:
        sink = self._sinks.get(item.sink)
        started = time.perf_counter()
        if sink is None:
            result = SinkResult(
                delivered=False, error=f"not sent: no sink named {item.sink!r}", permanent=True
            )
        elif self._core.clock() - item.created_at > self._config.max_age_seconds:
            result = SinkResult(
                delivered=False,
                error=f"not sent: the event is older than {_span(self._config.max_age_seconds)}",
                permanent=True,
            )
        else:
            sent = await self._send(sink, item)
            if sent is None:
                return None
            result, started = sent
        duration_ms = (time.perf_counter() - started) * 1000.0
        return self._outcome(item, result, duration_ms)

    async def _park(self, item: OutboxItem) -> None:
        """Leave a row its sink cannot send here to another process, attempts untouched: its
        lease ends in ``PARK_SECONDS``, and any deliverer may claim it then."""
        try:
            await self._core.outbox.renew(self._config.owner, [item.id], lease_seconds=PARK_SECONDS)
        except Exception:
            _LOGGER.exception("parking outbox row %d failed", item.id)

    async def _send(self, sink: Sink, item: OutboxItem) -> tuple[SinkResult, float] | None:
        """Send ``item`` in its lane; None when its lease was lost while it waited there."""
        key = (item.sink, item.destination)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(self._config.concurrency_per_destination)
        lane.users += 1
        queued_at = time.monotonic()
        try:
            async with lane.semaphore:
                if not self._holds(item):
                    return None
                started = time.perf_counter()
                if queued_at < lane.tripped_at > time.monotonic() - self._config.trip_seconds:
                    # The same destination failed to answer while this row waited for its
                    # turn; rows queued behind that failure fail now instead of each waiting
                    # out its own timeout. A row that queues afterwards (a retry) is sent.
                    error = f"not sent: the previous attempt moments ago failed ({lane.trip_error})"
                    return SinkResult(delivered=False, error=error), started
                try:
                    result = await sink.deliver(item)
                except Exception:
                    _LOGGER.exception("sink %s raised on outbox row %d", item.sink, item.id)
                    result = SinkResult(delivered=False, error="internal error while sending")
                if result.delivered:
                    lane.tripped_at = -math.inf
                elif result.status_code is None and not result.permanent:
                    lane.tripped_at = time.monotonic()
                    lane.trip_error = result.error
                return result, started
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    def _outcome(self, item: OutboxItem, result: SinkResult, duration_ms: float) -> DeliveryOutcome:
        """Turn one attempt's result into the row's next state and its activity entry."""
        config = self._config
        now = self._core.clock()
        attempt = item.attempts + 1
        error = result.error
        next_attempt_at: float | None = None
        dead = False
        if result.delivered:
            error = None
        elif result.permanent:
            dead = True
        elif attempt >= config.max_attempts:
            dead = True
            error = f"{error}; giving up after {attempt} attempts"
        else:
            next_attempt_at = now + self._retry_delay(attempt, result.retry_after)
            if next_attempt_at - item.created_at > config.max_age_seconds:
                dead = True
                next_attempt_at = None
                limit = _span(config.max_age_seconds)
                error = f"{error}; giving up: the next retry would pass the {limit} limit"
        if result.merged_into is not None:
            outcome = "merged"
        else:
            outcome = "delivered" if result.delivered else "dead" if dead else "retry"
        self._core.counters.delivery(item.sink, outcome, sent=result.status_code is not None)
        if dead:
            _LOGGER.warning(
                "outbox row %d (%s %s to %s %s) is dead after %d attempts: %s",
                item.id,
                item.event_type,
                item.event_id,
                item.sink,
                item.destination,
                attempt,
                error,
            )
        detail: dict[str, Any] = {
            "sink": item.sink,
            "destination": item.destination,
            "event_id": item.event_id,
            "event_type": item.event_type,
            "status_code": result.status_code,
            "error": error,
            "attempt": attempt,
            "outcome": outcome,
            "duration_ms": round(duration_ms, 1),
        }
        if next_attempt_at is not None:
            detail["next_attempt_at"] = iso(next_attempt_at)
        if result.merged_into is not None:
            detail["merged_into"] = result.merged_into
        return DeliveryOutcome(
            item=item,
            delivered=result.delivered,
            dead=dead,
            next_attempt_at=next_attempt_at,
            status_code=result.status_code,
            error=error,
            duration_ms=duration_ms,
            merged_into=result.merged_into,
            activity=NewActivity(
                kind="delivery",
                source="system",
                actor=None,
                device_id=item.device_id,
                device_name=_device_name(item.payload),
                detail=detail,
            ),
        )

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """How long a row waits after failed attempt ``attempt`` (1 for the first).

        A receiver's ``Retry-After`` is followed. Otherwise the first retry comes within
        ``first_retry_seconds`` (jittered into its upper half): one lost request or gateway
        hiccup still lands within Alexa's 3 s. Later retries back off exponentially.
        """
        config = self._config
        if retry_after is not None:
            return min(max(retry_after, MIN_RETRY_AFTER), config.retry_cap_seconds)
        if attempt <= 1 and config.first_retry_seconds is not None:
            return config.first_retry_seconds * (0.5 + random.random() / 2)
        return retry_delay(
            attempt,
            base=config.retry_base_seconds,
            factor=config.retry_factor,
            cap=config.retry_cap_seconds,
        )

    # recording --------------------------------------------------------------------------------
    async def _record_loop(self) -> None:
        while True:
            batch = [await self._outcomes.get()]
            while len(batch) < RECORD_BATCH and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            try:
                await self._record(batch)
            finally:
                for outcome in batch:
                    self._claimed.pop(outcome.item.id, None)
                    self._outcomes.task_done()
                self.wake()

    async def _record(self, batch: list[DeliveryOutcome]) -> None:
        try:
            recorded = await self._core.outbox.record(batch, owner=self._config.owner)
            _report_lost(batch, recorded)
            return
        except Exception:
            if len(batch) == 1:
                _LOGGER.exception(
                    "recording the delivery of outbox row %d failed", batch[0].item.id
                )
                return
            _LOGGER.exception(
                "recording %d delivery results failed; retrying one by one", len(batch)
            )
        for outcome in batch:
            # A row that cannot be recorded stays leased and is sent again after the lease.
            try:
                recorded = await self._core.outbox.record([outcome], owner=self._config.owner)
                _report_lost([outcome], recorded)
            except Exception:
                _LOGGER.exception("recording the delivery of outbox row %d failed", outcome.item.id)


def _ready(sink: Sink) -> bool:
    """Whether ``sink`` can send in this process now (a sink without ``ready`` always can)."""
    ready = getattr(sink, "ready", None)
    return ready is None or bool(ready())


def _report_lost(batch: list[DeliveryOutcome], recorded: set[int]) -> None:
    lost = [outcome.item.id for outcome in batch if outcome.item.id not in recorded]
    if lost:
        _LOGGER.warning(
            "%d delivery results not recorded: another deliverer took rows %s after their"
            " leases ran out",
            len(lost),
            ", ".join(map(str, lost[:10])),
        )


def _device_name(payload: Mapping[str, Any]) -> str | None:
    device = payload.get("device")
    if isinstance(device, Mapping):
        name = device.get("name")
        if isinstance(name, str):
            return name
    return None


def _span(seconds: float) -> str:
    """``72 h``, ``30 min``, ``5 s``: a limit as people read it."""
    if seconds >= 7200:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


async def _finish(task: asyncio.Task[None], budget: float) -> None:
    """Give ``task`` ``budget`` seconds to end, then cancel it; never raises."""
    if not task.done():
        await asyncio.wait((task,), timeout=budget)
    if not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=1.0)
    if task.done() and not task.cancelled() and task.exception() is not None:
        _LOGGER.error("%s ended with an error", task.get_name(), exc_info=task.exception())


__all__ = ["Dispatcher", "DispatcherConfig"]
