"""A fake upstream for the benches: an aiohttp app on a free loopback port, served from a
thread of the bench's own process (the Alexa gateway, Google's Home Graph)."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web
from run import free_port  # bench/ is not a package: beside this file


class LoopbackApp:
    """Serves the routes ``add_routes`` declares on 127.0.0.1:``port`` until ``stop``."""

    def __init__(self) -> None:
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
