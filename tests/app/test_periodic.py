"""The one periodic runner: each task repeats at its interval, a failure is logged and the
task runs again, ``stop`` ends them all."""

from __future__ import annotations

import asyncio
import logging

import pytest

from staterelay.app.integration import PeriodicTask
from staterelay.app.periodic import PeriodicRunner


async def test_tasks_repeat_independently_and_failures_do_not_stop_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A quick task runs at once and again; one that waits first has not run yet; a failing
    one is logged by name each time and keeps its turns."""
    runs: list[str] = []

    async def quick() -> None:
        runs.append("quick")

    async def later() -> None:
        runs.append("later")

    async def failing() -> None:
        runs.append("failing")
        raise RuntimeError("boom")

    runner = PeriodicRunner(
        [
            PeriodicTask("quick", 0.01, quick),
            PeriodicTask("later", 60.0, later, wait_first=True),
            PeriodicTask("failing", 0.01, failing),
        ]
    )
    with caplog.at_level(logging.ERROR, logger="staterelay.app.periodic"):
        runner.start()
        for _ in range(200):
            if runs.count("quick") >= 3 and runs.count("failing") >= 3:
                break
            await asyncio.sleep(0.01)
        await runner.stop()
    assert runs.count("quick") >= 3
    assert runs.count("failing") >= 3
    assert "later" not in runs
    failures = [r for r in caplog.records if r.getMessage() == "periodic task failing failed"]
    assert len(failures) >= 3
    assert all(r.exc_info is not None for r in failures)
    done = len(runs)
    await asyncio.sleep(0.05)
    assert len(runs) == done  # stopped: nothing runs any more


async def test_a_task_running_when_stopped_is_cancelled() -> None:
    """``stop`` does not wait for a slow task to finish its turn."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = PeriodicRunner([PeriodicTask("slow", 1.0, slow)])
    runner.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(runner.stop(), 5)
    assert cancelled.is_set()


def test_task_names_are_unique() -> None:
    """Names say which task failed in the log: two of one name are refused."""

    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="share a name: twice"):
        PeriodicRunner([PeriodicTask("twice", 1.0, nothing), PeriodicTask("twice", 2.0, nothing)])
