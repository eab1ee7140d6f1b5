"""Soak run: one ``staterelay serve`` under mixed traffic for minutes; prints memory and fds.

Usage: ``python bench/soak.py [--seconds 180] [--warm-up 15] [--workers 6] [--samples 6]``.
The traffic is the CI soak test's (tests/soak_traffic.py): API reads and writes, Alexa
directives, IFTTT trigger polls and actions, dashboard live-feed connects and disconnects,
and the webhook, Alexa event and IFTTT Realtime deliveries they cause, all on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is not a package; the traffic lives with the tests

from tests.processes import LoggedServerProcess  # noqa: E402
from tests.soak_traffic import (  # noqa: E402
    SOAK_ENV,
    Traffic,
    Upstreams,
    open_fds,
    prepare,
    rss_kib,
    settle,
)


async def soak(seconds: float, warm_up: float, workers: int, samples: int) -> None:
    """Warm up, measure, run in ``samples`` slices printing each, measure again."""
    upstreams = Upstreams()
    await upstreams.start()
    with tempfile.TemporaryDirectory() as tmp:
        server = LoggedServerProcess(Path(tmp) / "data", Path(tmp) / "serve.log", env=SOAK_ENV)
        try:
            credentials = await prepare(server.data_dir, upstreams)
            await server.start()
            traffic = Traffic(server.url, credentials)
            async with aiohttp.ClientSession() as http:
                await traffic.setup(http)
            await traffic.drive(warm_up, workers)
            await settle(server.url)
            fds_start, rss_start = open_fds(server.pid), rss_kib(server.pid)
            warm_requests = traffic.tally.requests
            print(f"after warm-up ({warm_up:g} s, {warm_requests} requests):")
            print(f"  RSS {rss_start / 1024:.1f} MiB, open fds {fds_start}", flush=True)
            started = time.monotonic()
            for n in range(samples):
                await traffic.drive(seconds / samples, workers)
                print(
                    f"  {time.monotonic() - started:6.0f} s: {traffic.tally.requests:7d} requests,"
                    f" RSS {rss_kib(server.pid) / 1024:6.1f} MiB, fds {open_fds(server.pid):3d}"
                    f" (under load, slice {n + 1}/{samples})",
                    flush=True,
                )
            elapsed = time.monotonic() - started
            await settle(server.url)
            fds_end, rss_end = open_fds(server.pid), rss_kib(server.pid)
            tally = traffic.tally
        finally:
            server.ensure_stopped()
            await upstreams.close()
    done = tally.requests - warm_requests
    print()
    print(
        f"StateRelay soak: {elapsed:.0f} s of mixed traffic after {warm_up:g} s of warm-up,"
        f" {workers} workers, {os.cpu_count()} cores"
    )
    print(f"requests done:   {tally.requests} ({done} after warm-up, {done / elapsed:.0f}/s)")
    print(f"by surface:      {dict(sorted(tally.by_surface.items()))}")
    print(f"statuses:        {dict(sorted(tally.statuses.items()))}")
    print(f"5xx answers:     {len(tally.server_errors)}")
    print(f"upstream hits:   {dict(sorted(upstreams.hits.items()))}")
    print(
        f"RSS start/end:   {rss_start / 1024:.1f} MiB -> {rss_end / 1024:.1f} MiB"
        f" ({(rss_end - rss_start) / 1024:+.1f} MiB)"
    )
    print(f"fds start/end:   {fds_start} -> {fds_end} ({fds_end - fds_start:+d})")


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--warm-up", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--samples", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(soak(args.seconds, args.warm_up, args.workers, args.samples))


if __name__ == "__main__":
    main()
