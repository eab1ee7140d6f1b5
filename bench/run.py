"""StateRelay benchmarks against a bare-aiohttp baseline measured in the same run.

Usage: ``python bench/run.py [--duration 10] [--connections 32]``. Needs ``wrk`` on PATH
(``apt-get install wrk``). Everything runs on 127.0.0.1; loops are bounded in time.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

TOGGLE_LUA = """
local n = 0
request = function()
  n = n + 1
  local value = (n % 2 == 0) and "ON" or "OFF"
  return wrk.format("PUT", wrk.path, wrk.headers, '{"power": "' .. value .. '"}')
end
"""


@dataclass
class Result:
    """One wrk run."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 20.0) -> float:
    """Poll ``url`` until it answers 200; returns when it did (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} did not become ready")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def parse_latency(text: str, label: str) -> float:
    """A latency percentile from wrk --latency output, in ms."""
    match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no {label} in wrk output:\n{text}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(
    name: str,
    url: str,
    *,
    duration: int,
    connections: int,
    headers: dict[str, str],
    script: str | None = None,
) -> Result:
    """Run wrk and parse requests/s, p50, p99 and non-2xx counts."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    script_file = None
    if script is not None:
        script_file = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115 - wrk reads it after close
        script_file.write(script)
        script_file.close()
        command += ["-s", script_file.name]
    command.append(url)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if script_file is not None:
        os.unlink(script_file.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Result(name, rps, parse_latency(output, "50%"), parse_latency(output, "99%"), errors)


def start_baseline() -> tuple[subprocess.Popen[bytes], int, float]:
    """Start the bare aiohttp app; returns the process, port and seconds to ready."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(HERE / "baseline_app.py"), str(port)])
    ready = wait_ready(f"http://127.0.0.1:{port}/readyz")
    return proc, port, ready - started


@dataclass(frozen=True)
class Baseline:
    """The bare aiohttp app measured in this run: what every ratio is taken against."""

    write: Result
    read: Result
    idle_rss_kib: int
    ready_seconds: float


class BaselineServer:
    """The bare aiohttp app, running while a bench uses it: ``with BaselineServer() as base``."""

    def __init__(self) -> None:
        self.proc, self.port, self.ready_seconds = start_baseline()

    def __enter__(self) -> BaselineServer:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    def post(self, duration: int, connections: int) -> Result:
        """Load it with small JSON POSTs (the write baseline)."""
        return run_wrk(
            "baseline POST json",
            f"http://127.0.0.1:{self.port}/state",
            headers={"Content-Type": "application/json"},
            script=TOGGLE_LUA.replace('"PUT"', '"POST"'),
            duration=duration,
            connections=connections,
        )

    def get(self, duration: int, connections: int) -> Result:
        """Load it with GETs (the read baseline)."""
        return run_wrk(
            "baseline GET json",
            f"http://127.0.0.1:{self.port}/state",
            headers={},
            duration=duration,
            connections=connections,
        )


def measure_baseline(duration: int, connections: int) -> Baseline:
    """Start the bare aiohttp app, load it with POSTs and then GETs, and stop it."""
    with BaselineServer() as base:
        time.sleep(1.0)
        rss = rss_kib(base.proc.pid)
        write = base.post(duration, connections)
        read = base.get(duration, connections)
    return Baseline(write, read, rss, base.ready_seconds)


@dataclass
class Bracketed:
    """Runs of one StateRelay bench, each measured between two runs of the baseline.

    On a shared machine the baseline's rate drifts by tens of percent within a minute, so a
    baseline measured once, minutes away, says little about a given run. Each run's ratio is
    taken against the mean of the baseline runs just before and just after it, and the bench
    reports the median of those ratios.
    """

    name: str
    runs: list[Result]
    bases: list[tuple[float, float]]  # the baseline rates (before, after) of each run

    def ratios(self) -> list[float]:
        """Each run's rate over the mean of its two baseline runs."""
        return [run.rps / ((a + b) / 2) for run, (a, b) in zip(self.runs, self.bases, strict=True)]

    def ratio(self) -> float:
        """The median ratio: what the targets are checked against."""
        return statistics.median(self.ratios())

    def median_run(self) -> Result:
        """The run whose ratio is the median one (the lower middle of an even count)."""
        ratios = self.ratios()
        order = sorted(range(len(ratios)), key=ratios.__getitem__)
        return self.runs[order[(len(order) - 1) // 2]]

    def worst_p99_ms(self) -> float:
        """The highest p99 of any run."""
        return max(run.p99_ms for run in self.runs)


def bracketed(
    base: BaselineServer,
    benches: Sequence[tuple[str, Callable[[], Result]]],
    *,
    rounds: int,
    duration: int,
    connections: int,
) -> tuple[list[Result], list[Bracketed]]:
    """Alternate baseline POST runs with ``rounds`` runs of each bench (a callable running
    wrk once, doing its own settling afterwards): base, A, base, B, base, A, ... base.
    Returns the baseline runs and one ``Bracketed`` per bench."""
    base_runs = [base.post(duration, connections)]
    results = {name: Bracketed(name, [], []) for name, _ in benches}
    for _ in range(rounds):
        for name, bench in benches:
            run = bench()
            base_runs.append(base.post(duration, connections))
            results[name].runs.append(run)
            results[name].bases.append((base_runs[-2].rps, base_runs[-1].rps))
    return base_runs, list(results.values())


def start_staterelay(
    data_dir: Path, durability: str, extra_env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Start ``staterelay serve`` on a fresh data dir (``extra_env`` added to its
    environment); returns process, port, seconds to ready."""
    port = free_port()
    env = {
        **os.environ,
        "STATERELAY_DATABASE_DURABILITY": durability,
        "STATERELAY_LOG_LEVEL": "warning",
        # one key from one address on purpose: the request rate limits would cut the bench off
        "STATERELAY_LIMITS_API_KEY_PER_MINUTE": "0",
        "STATERELAY_LIMITS_IP_PER_MINUTE": "0",
        **(extra_env or {}),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "staterelay",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
    )
    ready = wait_ready(f"http://127.0.0.1:{port}/readyz")
    return proc, port, ready - started


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """Run a staterelay CLI command on the data dir and return its stdout."""
    return subprocess.run(
        [sys.executable, "-m", "staterelay", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        input=stdin,
    ).stdout.strip()


def api(
    port: int, method: str, path: str, key: str, body: object | None = None
) -> dict[str, object]:
    """One JSON API call; an answer without a body (204) is ``{}``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
        result: dict[str, object] = json.loads(raw) if raw else {}
        return result


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on loopback, in a thread: answers 204 and counts what it got."""

    received = 0
    _lock = threading.Lock()

    @classmethod
    def start(cls) -> WebhookReceiver:
        """Listen on a free port and serve in a daemon thread."""
        receiver = cls(("127.0.0.1", 0), _ReceiverHandler)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        return receiver

    @property
    def url(self) -> str:
        """Where webhooks should post."""
        return f"http://127.0.0.1:{self.server_port}/hook"

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` deliveries arrived; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.received < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.received} webhook deliveries, not {count}")
            time.sleep(0.002)


class _ReceiverHandler(http.server.BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server._lock:
            self.server.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ratio(value: float, base: float) -> str:
    """value/base as a percentage."""
    return f"{100 * value / base:.0f}%" if base else "-"


def main() -> None:
    """Run every bench and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    opts = {"duration": args.duration, "connections": args.connections}
    results: list[Result] = []

    baseline = measure_baseline(args.duration, args.connections)
    base_write, base_read = baseline.write, baseline.read
    base_rss, base_ready = baseline.idle_rss_kib, baseline.ready_seconds
    results += [base_write, base_read]

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        cli(data_dir, "user", "create", "--email", "bench@example.com")
        key = cli(data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write")
        proc, port, ready_seconds = start_staterelay(data_dir, args.durability)
        try:
            time.sleep(1.0)
            idle_rss = rss_kib(proc.pid)
            device = api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "Bench"})
            device_id = device["id"]
            auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            write = run_wrk(
                f"PUT state ({args.durability})",
                f"http://127.0.0.1:{port}/api/v1/devices/{device_id}/state",
                headers=auth,
                script=TOGGLE_LUA,
                **opts,
            )
            read = run_wrk(
                "GET device",
                f"http://127.0.0.1:{port}/api/v1/devices/{device_id}",
                headers=auth,
                **opts,
            )
            final = api(port, "GET", f"/api/v1/devices/{device_id}", key)
        finally:
            stop(proc)
    results += [write, read]

    from disk import measure as measure_disk_writes  # bench/disk.py builds on this module

    disk = measure_disk_writes(1000, args.durability)

    print()
    print(
        f"StateRelay bench: {args.connections} connections, {args.duration}s each, "
        f"durability={args.durability}, {os.cpu_count()} cores"
    )
    print(
        f"{'bench':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs baseline':>12}"
    )
    for result, base in (
        (base_write, base_write),
        (base_read, base_read),
        (write, base_write),
        (read, base_read),
    ):
        print(
            f"{result.name:32} {result.rps:10.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
            f"{result.errors:7d} {ratio(result.rps, base.rps):>12}"
        )
    print(
        f"{'idle RSS (KiB)':32} staterelay {idle_rss} vs baseline {base_rss}: "
        f"{idle_rss / base_rss:.2f}x"
    )
    print(f"{'start to ready (s)':32} staterelay {ready_seconds:.2f} vs baseline {base_ready:.2f}")
    print(
        f"device version after the write bench: {final['version']} "
        f"(every acknowledged toggle is a committed change)"
    )
    print(
        f"{'disk writes per change (KiB)':32} {disk.per_change / 1024:.1f} (one webhook delivered"
        f" each, {disk.changes} changes in a row, /proc write_bytes of the server)"
    )


if __name__ == "__main__":
    main()
