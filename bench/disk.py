"""Bytes StateRelay writes to disk per change on SQLite: what wears a Raspberry Pi's SD card.

Usage: ``python bench/disk.py [--changes 1000] [--durability full]``.

One ``staterelay serve`` on a fresh data directory (on this machine's disk, not tmpfs),
one switch and one webhook to a receiver on loopback. The switch is toggled ``--changes``
times, one after another, and each change waits until its webhook delivery has arrived, as
in a household where changes come seconds apart. The server's ``write_bytes`` (``/proc``:
what the process sent to the block layer: the WAL, checkpoints into the database file, the
journal of each commit) over the run, divided by the changes, is the figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is not a package: run.py, next to this file, is imported by path.
from run import WebhookReceiver, api, cli, start_staterelay, stop


@dataclass(frozen=True)
class DiskWrites:
    """What the run wrote: bytes per change, and the whole."""

    changes: int
    bytes_written: int
    seconds: float

    @property
    def per_change(self) -> float:
        """Bytes written per change."""
        return self.bytes_written / self.changes


def write_bytes(pid: int) -> int:
    """Bytes the process has caused to be written to storage so far."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/<pid>/io has no write_bytes")


def measure(changes: int, durability: str, parent: Path | None = None) -> DiskWrites:
    """Toggle one switch ``changes`` times with one webhook delivered per change."""
    receiver = WebhookReceiver.start()
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        data_dir = Path(tmp) / "data"
        cli(data_dir, "user", "create", "--email", "bench@example.com")
        key = cli(data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write")
        os.environ["STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "true"
        proc, port, _ = start_staterelay(data_dir, durability)
        try:
            device = api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "Disk"})
            path = f"/api/v1/devices/{device['id']}/state"
            api(port, "POST", "/api/v1/webhooks", key, {"url": receiver.url})
            for n in range(20):  # warm-up: caches filled, the first checkpoints behind us
                api(port, "PUT", path, key, {"power": "OFF" if n % 2 else "ON"})
                receiver.wait_for(n + 1)
            time.sleep(1.0)
            before, started = write_bytes(proc.pid), time.monotonic()
            for n in range(changes):
                api(port, "PUT", path, key, {"power": "OFF" if n % 2 else "ON"})
                receiver.wait_for(21 + n)
            time.sleep(1.0)  # the last delivery's result is recorded
            written = write_bytes(proc.pid) - before
            return DiskWrites(changes, written, time.monotonic() - started)
        finally:
            stop(proc)
            receiver.shutdown()


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    result = measure(args.changes, args.durability)
    print(
        f"SQLite, durability={args.durability}: {result.changes} changes, each with one webhook"
        f" delivered, wrote {result.bytes_written / 1024:.0f} KiB:"
        f" {result.per_change / 1024:.1f} KiB per change ({result.seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
