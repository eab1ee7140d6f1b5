"""A fake upstream for the benches: an aiohttp app on a free loopback port, served from a
thread of the bench's own process (the Alexa gateway, Google's Home Graph), recording when
each device's report of each value arrived."""

from __future__ import annotations

import asyncio
import threading
import time

from aiohttp import web
from run import free_port  # bench/ is not a package: beside this file


class LoopbackApp:
    """Serves the routes ``add_routes`` declares on 127.0.0.1:``port`` until ``stop``.

    Handlers record each accepted report: ``reports`` counts them and ``arrivals`` keeps when
    (device, value) first arrived, under ``condition``; ``take`` and ``quiet`` read them.
    """

    what = "report"  # in messages: what the upstream receives

    def __init__(self) -> None:
        self.reports = 0
        self.arrivals: dict[tuple[str, object], float] = {}
        self.condition = threading.Condition()
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def add_routes(self, app: web.Application) -> None:
        """Declare the fake's routes on ``app``."""
        raise NotImplementedError

    def start(self) -> None:
        """Serve until ``stop``."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def take(self, device_id: str, value: object, timeout: float = 5.0) -> float:
        """When the report of ``device_id`` having ``value`` arrived (monotonic)."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while (device_id, value) not in self.arrivals:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no {self.what} for {device_id} {value} in {timeout} s")
                self.condition.wait(left)
            return self.arrivals.pop((device_id, value))

    def quiet(self, seconds: float = 1.0, limit: float = 60.0) -> None:
        """Wait until no report arrived for ``seconds`` (the backlog is drained)."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            before = self.reports
            time.sleep(seconds)
            if self.reports == before:
                break
        with self.condition:
            self.arrivals.clear()
