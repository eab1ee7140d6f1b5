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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/ is not a package: run.py, next to this file, is imported by path.
from run import TOGGLE_LUA, Result, api, free_port, run_wrk as wrk, start_baseline, stop, wait_ready

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


def together(name: str, runs: list[tuple[str, dict[str, str], str | None]], **opts: int) -> Result:
    """Run one wrk per (url, headers, script) at the same time; sum req/s and errors.

    The latency columns are the worst of the runs' percentiles (wrk gives no combined one).
    """
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = [
            pool.submit(wrk, name, url, headers=headers, script=script, **opts)
            for url, headers, script in runs
        ]
        results = [future.result() for future in futures]
    return Result(
        name,
        sum(r.rps for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


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


def bench_engine(
    label: str, env: dict[str, str], data_dir: Path, replicas: int, duration: int, connections: int
) -> list[Result]:
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
                **opts,
            ),
            together(
                f"PUT state, {SPREAD} devices ({label})",
                [
                    (f"http://127.0.0.1:{port}/", auth, script)
                    for port, script in zip(ports, spread, strict=True)
                ],
                **opts,
            ),
            together(f"GET device ({label})", [(url, auth, None) for url in one], **opts),
        ]
    finally:
        for proc, _ in procs:
            stop(proc)


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

    base_proc, base_port, _ = start_baseline()
    try:
        time.sleep(1.0)
        base_write = wrk(
            "baseline POST json",
            f"http://127.0.0.1:{base_port}/state",
            headers={"Content-Type": "application/json"},
            script=TOGGLE_LUA.replace('"PUT"', '"POST"'),
            **opts,
        )
        base_read = wrk(
            "baseline GET json", f"http://127.0.0.1:{base_port}/state", headers={}, **opts
        )
    finally:
        stop(base_proc)

    quiet = {**os.environ, "STATERELAY_LOG_LEVEL": "warning"}
    rows: list[list[Result]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "sqlite"
        staterelay(quiet, data_dir, "user", "create", "--email", "bench@example.com")
        rows.append(bench_engine("sqlite, 1 process", quiet, data_dir, 1, **opts))

        with scratch_database(args.admin_url) as (owner_url, app_url):
            env = {**quiet, "STATERELAY_DATABASE_URL": app_url}
            data_dir = Path(tmp) / "postgres"  # the replicas share its secret.key
            staterelay(env, data_dir, "db", "migrate", "--url", owner_url)
            staterelay(env, data_dir, "user", "create", "--email", "bench@example.com")
            for replicas in (1, 2):
                label = f"postgres, {replicas} replica{'s' if replicas > 1 else ''}"
                rows.append(bench_engine(label, env, data_dir, replicas, **opts))

    print()
    print(
        f"StateRelay on PostgreSQL: {args.connections} connections in all, {args.duration}s each,"
        f" {os.cpu_count()} cores, wrk -t2 per run"
    )
    print(f"{'bench':42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs base':>8}")
    table = [(base_write, base_write), (base_read, base_read)]
    for one_device, spread, read in rows:
        table += [(one_device, base_write), (spread, base_write), (read, base_read)]
    for result, base in table:
        share = f"{100 * result.rps / base.rps:.0f}%" if base.rps else "-"
        print(
            f"{result.name:42} {result.rps:8.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f}"
            f" {result.errors:7d} {share:>8}"
        )
    one, two = rows[1], rows[2]
    growth = ", ".join(
        f"{kind} x{b.rps / a.rps:.2f}"
        for kind, a, b in zip(("1-device writes", "spread writes", "reads"), one, two, strict=True)
    )
    print(f"two replicas vs one: {growth}")


if __name__ == "__main__":
    main()
