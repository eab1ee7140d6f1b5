"""StateRelay on PostgreSQL, one replica and two, against the bare-aiohttp baseline.

Usage: ``python bench/postgres.py [--duration 10] [--connections 32] [--admin-url URL]``.
Needs ``wrk`` and a PostgreSQL server whose ``--admin-url`` role may create roles and
databases (default: the superuser ``postgres`` on 127.0.0.1:5432). It creates a scratch
database owned by ``staterelay_owner``, migrates it with ``staterelay db migrate``, runs
every ``staterelay serve`` as ``staterelay_app`` (row-level security on), and drops the
database at the end.

wrk drives one URL, so the two-replica runs start one wrk per replica at the same time,
each with half the connections and its own device, and add up their throughput. For
context the same benches run on the default SQLite engine too. Everything is on loopback
and bounded in time.

Request rate limits are off in every server (``STATERELAY_LIMITS_*_PER_MINUTE=0``): the
bench measures throughput, not the limiter. During each PostgreSQL run it samples the CPU
time of the servers, of PostgreSQL and of everything else (``/proc``), and the database's
commits and WAL flushes (``pg_stat_database``, ``pg_stat_wal``), and ends by saying what
limits the growth from one replica to two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is not a package: run.py, next to this file, is imported by path.
from pgwire import RoundTripProxy
from run import (
    TOGGLE_LUA,
    Result,
    WebhookReceiver,
    api,
    free_port,
    measure_baseline,
    run_wrk as wrk,
    stop,
    wait_ready,
)

OWNER_ROLE = "staterelay_owner"
APP_ROLE = "staterelay_app"


def database_url(admin_url: str, role: str, database: str) -> str:
    """``admin_url`` with another role and database (same host and port)."""
    parts = urlsplit(admin_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, f"/{database}", "", ""))


async def _admin(admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            with suppress(asyncpg.DuplicateObjectError):  # the roles of an earlier run
                await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def scratch_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """A new database owned by the owner role; yields (owner URL, app URL); dropped after."""
    name = f"staterelay_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin(
            admin_url,
            f"CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS",
            f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS",
            f"CREATE DATABASE {name} OWNER {OWNER_ROLE}",
        )
    )
    try:
        yield database_url(admin_url, OWNER_ROLE, name), database_url(admin_url, APP_ROLE, name)
    finally:
        asyncio.run(_admin(admin_url, f"DROP DATABASE {name} WITH (FORCE)"))


def staterelay(env: dict[str, str], data_dir: Path, *args: str) -> str:
    """Run a CLI command with the given environment; returns its stdout."""
    return subprocess.run(
        [sys.executable, "-m", "staterelay", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()


def serve(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start one ``staterelay serve`` replica; returns the process and its port."""
    port = free_port()
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
    wait_ready(f"http://127.0.0.1:{port}/readyz")
    return proc, port


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_ticks() -> dict[int, tuple[str, int]]:
    """utime + stime of every process: pid -> (command name, jiffies)."""
    ticks: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = (name, int(rest[11]) + int(rest[12]))
    return ticks


async def _pg_counters(url: str) -> tuple[int, int]:
    """(commits in this database, WAL flushes server-wide) so far."""
    conn = await asyncpg.connect(url)
    try:
        commits = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        syncs = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
        return int(commits), int(syncs)
    finally:
        await conn.close()


def _children_ticks() -> float:
    """CPU seconds of this process's finished children (the wrk runs; servers still run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Usage:
    """Where the machine's CPU went during one run (in cores), and the commit work."""

    seconds: float
    cores_busy: float  # the whole machine, of os.cpu_count()
    servers: float  # the staterelay processes under test
    postgres: float  # every PostgreSQL process (the server is shared with anything else)
    wrk: float  # the load generator
    commits: int = 0  # in the bench's database
    wal_syncs: int = 0  # server-wide

    @property
    def other(self) -> float:
        """Cores used by anything else running on the machine meanwhile."""
        return max(0.0, self.cores_busy - self.servers - self.postgres - self.wrk)


class Sampler:
    """Samples CPU time (``/proc``) and PostgreSQL's counters around one run."""

    def __init__(self, server_pids: Sequence[int], stats_url: str | None) -> None:
        self.server_pids = set(server_pids)
        self.stats_url = stats_url
        self._before: tuple[float, int, dict[int, tuple[str, int]], float, tuple[int, int]]

    def _counters(self) -> tuple[int, int]:
        if self.stats_url is None:
            return 0, 0
        return asyncio.run(_pg_counters(self.stats_url))

    def start(self) -> None:
        """Take the first sample."""
        counters = self._counters()
        busy, _ = _cpu_ticks()
        self._before = (time.monotonic(), busy, _process_ticks(), _children_ticks(), counters)

    def stop(self) -> Usage:
        """Take the second sample (CPU at once, the database's counters once flushed)."""
        t1, (busy1, _), procs1, children1 = (
            time.monotonic(),
            _cpu_ticks(),
            _process_ticks(),
            _children_ticks(),
        )
        if self.stats_url is not None:
            time.sleep(1.2)  # backends flush their statistics at most once a second
        commits1, syncs1 = self._counters()
        t0, busy0, procs0, children0, (commits0, syncs0) = self._before
        seconds = t1 - t0
        servers = postgres = 0
        for pid, (name, ticks) in procs1.items():
            spent = ticks - procs0.get(pid, (name, 0))[1]
            if pid in self.server_pids:
                servers += spent
            elif name == "postgres":
                postgres += spent
        ticks_per_second = CLOCK_TICKS * seconds
        return Usage(
            seconds=seconds,
            cores_busy=(busy1 - busy0) / ticks_per_second,
            servers=servers / ticks_per_second,
            postgres=postgres / ticks_per_second,
            wrk=(children1 - children0) / seconds,
            commits=commits1 - commits0,
            wal_syncs=syncs1 - syncs0,
        )


def together(
    name: str,
    runs: list[tuple[str, dict[str, str], str | None]],
    sampler: Sampler,
    **opts: int,
) -> tuple[Result, Usage]:
    """Run one wrk per (url, headers, script) at the same time; sum req/s and errors.

    The latency columns are the worst of the runs' percentiles (wrk gives no combined one).
    """
    sampler.start()
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = [
            pool.submit(wrk, name, url, headers=headers, script=script, **opts)
            for url, headers, script in runs
        ]
        results = [future.result() for future in futures]
    usage = sampler.stop()
    return Result(
        name,
        sum(r.rps for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.errors for r in results),
    ), usage


SPREAD = 8  # devices per replica in the spread write bench

SPREAD_LUA = """
local paths = {%s}
local n = 0
request = function()
  n = n + 1
  local value = (math.floor(n / #paths) %% 2 == 0) and "ON" or "OFF"
  return wrk.format("PUT", paths[(n %% #paths) + 1], wrk.headers, '{"power": "' .. value .. '"}')
end
"""

KINDS = ("1-device writes", f"writes over {SPREAD} devices", "reads")


def bench_engine(
    label: str,
    env: dict[str, str],
    data_dir: Path,
    replicas: int,
    duration: int,
    connections: int,
    stats_url: str | None = None,
) -> list[tuple[Result, Usage]]:
    """On ``replicas`` servers: writes to one device per replica, writes spread over
    ``SPREAD`` devices per replica, and reads of one device per replica."""
    key = staterelay(
        env, data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write"
    )
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    procs = [serve(env, data_dir) for _ in range(replicas)]
    try:
        time.sleep(1.0)
        devices = [
            [
                str(
                    api(
                        port,
                        "POST",
                        "/api/v1/devices",
                        key,
                        {"type": "switch", "name": f"Bench {replicas}.{r}.{i}"},
                    )["id"]
                )
                for i in range(SPREAD)
            ]
            for r, (_, port) in enumerate(procs)
        ]
        ports = [port for _, port in procs]
        sampler = Sampler([proc.pid for proc, _ in procs], stats_url)
        opts = {"duration": duration, "connections": connections // replicas}
        one = [
            f"http://127.0.0.1:{port}/api/v1/devices/{ids[0]}"
            for port, ids in zip(ports, devices, strict=True)
        ]
        spread = [
            SPREAD_LUA % ", ".join(f'"/api/v1/devices/{device}/state"' for device in ids)
            for ids in devices
        ]
        return [
            together(
                f"PUT state, 1 device ({label})",
                [(f"{url}/state", auth, TOGGLE_LUA) for url in one],
                sampler,
                **opts,
            ),
            together(
                f"PUT state, {SPREAD} devices ({label})",
                [
                    (f"http://127.0.0.1:{port}/", auth, script)
                    for port, script in zip(ports, spread, strict=True)
                ],
                sampler,
                **opts,
            ),
            together(f"GET device ({label})", [(url, auth, None) for url in one], sampler, **opts),
        ]
    finally:
        for proc, _ in procs:
            stop(proc)


async def _commit_path(url: str) -> tuple[dict[str, str], float]:
    """The commit settings, and how long one small committed write takes (ms, median)."""
    conn = await asyncpg.connect(url)
    try:
        names = ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay")
        settings = {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
        await conn.execute("CREATE TABLE bench_commit (n integer)")
        timings = []
        for n in range(200):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_commit VALUES ($1)", n)  # one commit each
            timings.append(time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_commit")
        return settings, 1000 * sorted(timings)[len(timings) // 2]
    finally:
        await conn.close()


@dataclass(frozen=True)
class RoundTrips:
    """Round trips to PostgreSQL per operation, background traffic taken out."""

    put: float
    get: float
    put_delivered: float
    idle_per_second: float


def count_round_trips(env: dict[str, str], data_dir: Path, app_url: str) -> RoundTrips:
    """Run one replica through a counting proxy; count what a PUT, a GET and a PUT whose
    webhook is delivered cost, each over many sequential operations after a warm-up."""
    proxy = RoundTripProxy(
        urlsplit(app_url).hostname or "127.0.0.1", urlsplit(app_url).port or 5432
    )
    proxy.start()
    receiver = WebhookReceiver.start()
    parts = urlsplit(app_url)
    through = urlunsplit(
        (
            parts.scheme,
            f"{parts.username}@127.0.0.1:{proxy.port}",
            parts.path,
            "sslmode=disable",
            "",
        )
    )
    env = {
        **env,
        "STATERELAY_DATABASE_URL": through,
        "STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
    }
    key = staterelay(
        env, data_dir, "apikey", "create", "--email", "bench@example.com", "--scope", "write"
    )
    proc, port = serve(env, data_dir)
    try:
        device = str(
            api(port, "POST", "/api/v1/devices", key, {"type": "switch", "name": "RT"})["id"]
        )
        path = f"/api/v1/devices/{device}"
        values = iter(["ON", "OFF"] * 10_000)

        def put() -> None:
            api(port, "PUT", f"{path}/state", key, {"power": next(values)})

        def get() -> None:
            api(port, "GET", path, key)

        for _ in range(30):  # caches filled, statements prepared
            put()
            get()
        time.sleep(1.0)
        started, before = time.monotonic(), proxy.count
        time.sleep(3.0)
        idle = (proxy.count - before) / (time.monotonic() - started)

        def per_operation(operation: Callable[[], None], times: int) -> float:
            started, before = time.monotonic(), proxy.count
            for _ in range(times):
                operation()
            elapsed = time.monotonic() - started
            return (proxy.count - before - idle * elapsed) / times

        puts = per_operation(put, 200)
        gets = per_operation(get, 200)
        webhook = api(
            port,
            "POST",
            "/api/v1/webhooks",
            key,
            {"url": f"http://127.0.0.1:{receiver.server_port}/hook"},
        )

        def put_delivered() -> None:
            wanted = receiver.received + 1
            put()
            receiver.wait_for(wanted)
            time.sleep(0.05)  # the result is recorded after the answer

        for _ in range(10):
            put_delivered()
        delivered = per_operation(put_delivered, 50)
        # The benches after this one measure a household without webhooks: a webhook left
        # here, its receiver gone, would have every later change queue a delivery that fails.
        api(port, "DELETE", f"/api/v1/webhooks/{webhook['id']}", key)
        api(port, "DELETE", path, key)
        return RoundTrips(put=puts, get=gets, put_delivered=delivered, idle_per_second=idle)
    finally:
        stop(proc)
        receiver.shutdown()
        proxy.stop()


def report_limits(
    cores: int,
    one: list[tuple[Result, Usage]],
    two: list[tuple[Result, Usage]],
    settings: dict[str, str],
    commit_ms: float,
) -> None:
    """Say what limits throughput from one replica to two, from what was measured."""
    print()
    print(f"Where the time went ({cores} cores; PostgreSQL, wrk and the servers share them):")
    print(
        f"{'run':44} {'busy':>9} {'servers':>8} {'postgres':>9} {'wrk':>5} {'other':>6}"
        f" {'commits/req':>12} {'WAL flushes/s':>14} {'app ms/req':>11} {'db ms/req':>10}"
    )
    for result, usage in (*one, *two):
        per_request = usage.commits / (result.rps * usage.seconds) if result.rps else 0.0
        app_ms = 1000 * usage.servers / result.rps if result.rps else 0.0
        db_ms = 1000 * usage.postgres / result.rps if result.rps else 0.0
        print(
            f"{result.name:44} {usage.cores_busy:5.2f}/{cores:<3} {usage.servers:8.2f}"
            f" {usage.postgres:9.2f} {usage.wrk:5.2f} {usage.other:6.2f} {per_request:12.2f}"
            f" {usage.wal_syncs / usage.seconds:14.0f} {app_ms:11.2f} {db_ms:10.2f}"
        )
    print(
        "(busy and the columns after it: CPU seconds per second; postgres is every PostgreSQL"
        " process and WAL flushes are server-wide, so other users of the server count too;"
        " other is anything else running on the machine; app and db ms/req: CPU time of the"
        " StateRelay processes and of PostgreSQL per request)"
    )
    print()
    print("What limits growth from one replica to two:")
    for label, (result_a, usage_a), (result_b, usage_b) in (
        ("writes over several devices", one[1], two[1]),
        ("reads", one[2], two[2]),
    ):
        growth = result_b.rps / result_a.rps if result_a.rps else 0.0
        cpu_a = 1000 * usage_a.cores_busy / result_a.rps if result_a.rps else 0.0
        cpu_b = 1000 * usage_b.cores_busy / result_b.rps if result_b.rps else 0.0
        if usage_b.cores_busy >= 0.9 * cores and usage_a.servers >= 0.8:
            verdict = (
                f"one replica is held by its own process (a Python process runs on one core);"
                f" two replicas saturate the {cores} cores they share with PostgreSQL, so"
                " throughput stays at what the machine's CPU allows"
            )
        elif usage_a.cores_busy >= 0.9 * cores:
            verdict = "the CPU was saturated by one replica already; a second can only split it"
        elif usage_b.cores_busy >= 0.9 * cores:
            verdict = "two replicas saturate the CPU"
        else:
            verdict = "the CPU is not saturated: the limit is waiting on the database"
        print(
            f"- CPU, {label}: x{growth:.2f}. One replica {result_a.rps:.0f} req/s, its"
            f" process {usage_a.servers:.2f} core, PostgreSQL {usage_a.postgres:.2f},"
            f" {usage_a.cores_busy:.2f} of {cores} busy; two replicas {result_b.rps:.0f}"
            f" req/s, processes {usage_b.servers:.2f}, PostgreSQL {usage_b.postgres:.2f},"
            f" {usage_b.cores_busy:.2f} busy. CPU per request {cpu_a:.2f} ms and"
            f" {cpu_b:.2f} ms: {verdict}."
        )
    (write_a, use_a), (write_b, _) = one[0], two[0]
    spread_result, spread_use = one[1]
    per_request = use_a.commits / (write_a.rps * use_a.seconds) if write_a.rps else 0.0
    flush_rate = spread_use.wal_syncs / spread_use.seconds
    flushing = flush_rate * commit_ms / 1000
    print(
        f"- Commit path: a write is one transaction ({per_request:.2f} commits per write"
        f" measured), acknowledged once committed (synchronous_commit="
        f"{settings['synchronous_commit']}, fsync={settings['fsync']},"
        f" {settings['wal_sync_method']}, commit_delay={settings['commit_delay']}). A bare"
        f" commit takes {commit_ms:.2f} ms on this server (median of 200); at"
        f" {spread_result.rps:.0f} writes/s over several devices PostgreSQL made"
        f" {flush_rate:.0f} WAL flushes/s (server-wide), so its one WAL was flushing about"
        f" {100 * flushing:.0f}% of the time: "
        + (
            "that is the limit here."
            if flushing >= 0.8
            else "not the limit here, but it is shared by every replica and grows with a"
            " slower disk (a 2 ms flush would cap ungrouped commits near 500/s)."
        )
    )
    hold_ms = 1000 / write_a.rps if write_a.rps else 0.0
    print(
        f"- One device: its writes queue on its row lock, held for the transaction's round"
        f" trips to PostgreSQL and its commit: {write_a.rps:.0f} req/s is {hold_ms:.2f} ms per"
        f" write. Replicas do not shorten that; the two-replica run writes two devices (one"
        f" per replica), hence {write_b.rps:.0f} req/s."
    )
    print(
        "- On separate machines each replica brings its own cores; PostgreSQL's CPU and its"
        " single WAL are then what all replicas share."
    )


def main() -> None:
    """Run the benches and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    opts = {"duration": args.duration, "connections": args.connections}

    baseline = measure_baseline(args.duration, args.connections)
    base_write, base_read = baseline.write, baseline.read

    quiet = {
        **os.environ,
        "STATERELAY_LOG_LEVEL": "warning",
        # Throughput, not the request rate limiter, is measured here.
        "STATERELAY_LIMITS_API_KEY_PER_MINUTE": "0",
        "STATERELAY_LIMITS_IP_PER_MINUTE": "0",
    }
    rows: list[list[tuple[Result, Usage]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "sqlite"
        staterelay(quiet, data_dir, "user", "create", "--email", "bench@example.com")
        rows.append(bench_engine("sqlite, 1 process", quiet, data_dir, 1, **opts))

        with scratch_database(args.admin_url) as (owner_url, app_url):
            env = {**quiet, "STATERELAY_DATABASE_URL": app_url}
            # The admin role reads the statistics of the bench's database.
            admin_role = urlsplit(args.admin_url).username or "postgres"
            stats_url = database_url(args.admin_url, admin_role, urlsplit(app_url).path[1:])
            data_dir = Path(tmp) / "postgres"  # the replicas share its secret.key
            staterelay(env, data_dir, "db", "migrate", "--url", owner_url)
            settings, commit_ms = asyncio.run(_commit_path(stats_url))
            staterelay(env, data_dir, "user", "create", "--email", "bench@example.com")
            trips = count_round_trips(env, data_dir, app_url)
            for replicas in (1, 2):
                label = f"postgres, {replicas} replica{'s' if replicas > 1 else ''}"
                rows.append(
                    bench_engine(label, env, data_dir, replicas, **opts, stats_url=stats_url)
                )

    cores = os.cpu_count() or 1
    print()
    print(
        f"StateRelay on PostgreSQL: {args.connections} connections in all, {args.duration}s each,"
        f" {cores} cores, wrk -t2 per run"
    )
    print(f"{'bench':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs base':>8}")
    table = [(base_write, base_write), (base_read, base_read)]
    for (one_device, _), (spread, _), (read, _) in rows:
        table += [(one_device, base_write), (spread, base_write), (read, base_read)]
    for result, base in table:
        share = f"{100 * result.rps / base.rps:.0f}%" if base.rps else "-"
        print(
            f"{result.name:44} {result.rps:8.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f}"
            f" {result.errors:7d} {share:>8}"
        )
    one, two = rows[1], rows[2]
    print()
    print("PostgreSQL, one replica vs two (share of the baseline measured above):")
    for kind, (a, _), (b, _), base in zip(
        KINDS, one, two, (base_write, base_write, base_read), strict=True
    ):
        growth = f"x{b.rps / a.rps:.2f}" if a.rps else "-"
        print(
            f"  {kind:24} 1 replica {a.rps:7.0f} req/s ({100 * a.rps / base.rps:3.0f}%),"
            f" 2 replicas {b.rps:7.0f} req/s ({100 * b.rps / base.rps:3.0f}%): {growth}"
        )
    print()
    print(
        f"Round trips to PostgreSQL (counted at the wire: Sync, Query and Flush messages, through a"
        f" proxy; background traffic, {trips.idle_per_second:.2f}/s, taken out):"
    )
    print(f"  PUT state                          {trips.put:5.2f}")
    print(f"  GET device                         {trips.get:5.2f}")
    print(f"  PUT state, its webhook delivered   {trips.put_delivered:5.2f}")
    report_limits(cores, one, two, settings, commit_ms)


if __name__ == "__main__":
    main()
