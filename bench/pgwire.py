"""A PostgreSQL proxy on loopback that counts round trips at the wire protocol.

A client waits for the server once per ``Sync`` of the extended query protocol, once per
simple ``Query``, and once per ``Flush`` (asyncpg sends one to have a statement prepared and
described, and waits for the answer); everything else it sends (Parse, Bind, Describe,
Execute) rides along. The proxy reads the messages the client sends, counts those three,
and passes every byte on unchanged in both directions. Connect through it without TLS
(``sslmode=disable``), or it could not read the stream.

It runs its own event loop in a thread, so a synchronous bench can start it, start servers
that connect through it, and read the count between operations.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from contextlib import suppress
from typing import Final

_SSL_REQUEST: Final = 80877103
_GSSENC_REQUEST: Final = 80877104
_ROUND_TRIP_MESSAGES: Final = frozenset({b"S", b"Q", b"H"})


class RoundTripProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``upstream``; ``count`` is the total."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._count = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def count(self) -> int:
        """Round trips counted so far, over every connection."""
        with self._lock:
            return self._count

    def start(self) -> RoundTripProxy:
        """Listen on a free port (``port``) and serve in a background thread."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop listening and stop the thread (open connections are dropped)."""
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        back = asyncio.ensure_future(_pipe(server_r, client_w))
        try:
            await self._frontend(client_r, server_w)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            server_w.close()
            back.cancel()
            with suppress(asyncio.CancelledError, ConnectionError):
                await back
            client_w.close()

    async def _frontend(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward the client's messages, counting the ones that wait for an answer."""
        while True:  # untyped start-up messages, until the real one
            header = await reader.readexactly(8)
            length, code = struct.unpack("!ii", header)
            writer.write(header + await reader.readexactly(length - 8))
            await writer.drain()
            if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                break
        while True:
            header = await reader.readexactly(5)
            kind, length = header[:1], struct.unpack("!i", header[1:])[0]
            body = await reader.readexactly(length - 4)
            if kind in _ROUND_TRIP_MESSAGES:  # counted before the server can answer it
                with self._lock:
                    self._count += 1
            writer.write(header + body)
            await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until the reader ends, then end the writer too."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
