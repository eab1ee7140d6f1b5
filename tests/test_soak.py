"""Soak: one ``staterelay serve`` under mixed traffic from every surface stays flat.

After a warm-up, resident memory and open file descriptors are measured; after the main run
(and once the outbox has drained and connections have closed) they are measured again.
Descriptors must come back to within a few of the warm-up count (no leaked sockets, files
or tasks holding them), memory may grow only a bounded amount, and no answer may be a 5xx.
``bench/soak.py`` runs the same traffic for longer and prints the figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from tests.processes import LoggedServerProcess
from tests.secret_scan import SUITE_SCANNER
from tests.soak_traffic import SOAK_ENV, Traffic, Upstreams, open_fds, prepare, rss_kib, settle

WARM_UP_SECONDS = float(os.environ.get("STATERELAY_SOAK_WARM_UP", "10"))
RUN_SECONDS = float(os.environ.get("STATERELAY_SOAK_SECONDS", "40"))
FD_MARGIN = 8
RSS_GROWTH_KIB = 30 * 1024

pytestmark = pytest.mark.slow


async def test_mixed_traffic_leaks_neither_memory_nor_descriptors(tmp_path: Path) -> None:
    """API, Alexa, IFTTT, live feeds and webhook deliveries for a while: flat afterwards."""
    upstreams = Upstreams()
    await upstreams.start()
    server = LoggedServerProcess(tmp_path / "data", tmp_path / "serve.log", env=SOAK_ENV)
    try:
        credentials = await prepare(server.data_dir, upstreams)
        await server.start()
        traffic = Traffic(server.url, credentials)
        async with aiohttp.ClientSession() as http:
            await traffic.setup(http)
        await traffic.drive(WARM_UP_SECONDS)
        await settle(server.url)
        fds_start, rss_start = open_fds(server.pid), rss_kib(server.pid)
        warm_requests = traffic.tally.requests

        tally = await traffic.drive(RUN_SECONDS)
        await settle(server.url)
        fds_end, rss_end = open_fds(server.pid), rss_kib(server.pid)

        figures = (
            f"requests {tally.requests} ({tally.requests - warm_requests} after warm-up),"
            f" RSS {rss_start} -> {rss_end} KiB, fds {fds_start} -> {fds_end},"
            f" by surface {dict(tally.by_surface)}, statuses {dict(tally.statuses)}"
        )
        print(figures)  # noqa: T201 - the figures, shown with -s
        assert tally.server_errors == [], figures
        assert set(tally.by_surface) == {"api", "alexa", "ifttt", "dashboard"}, figures
        assert upstreams.hits["/hook"] > 0, upstreams.hits
        assert upstreams.hits["/v3/events"] > 0, upstreams.hits
        assert upstreams.hits["/v1/notifications"] > 0, upstreams.hits
        assert fds_end <= fds_start + FD_MARGIN, figures
        assert rss_end - rss_start <= max(rss_start // 4, RSS_GROWTH_KIB), figures
    finally:
        server.ensure_stopped()
        await upstreams.close()
        SUITE_SCANNER.scan("stderr of the soak server", server.log_text())
