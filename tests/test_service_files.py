"""Deployment files: the systemd unit, the Caddyfile, the Dockerfile and the compose example.

Real tools check them (``systemd-analyze``, ``caddy``): where one is missing its tests skip
with the reason, and fail under CI=true, which installs both. The Dockerfile is also built
and run step by step in tests/test_packaging.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml
from packaging.utils import canonicalize_name

from staterelay.app.hosts import HostRouter
from staterelay.app.registry import BUILTIN
from staterelay.app.surfaces import SurfaceTable
from staterelay.settings import load_settings
from staterelay.store import open_store
from tests.constraints import runtime_requirements
from tests.deployfiles import (
    ROOT,
    compose_variables,
    env_of,
    interpolate,
    parse_dockerfile,
    stages,
    unit_directives,
)
from tests.postgres_support import ADMIN_URL, require_postgres
from tests.skips import unavailable

UNIT = ROOT / "staterelay.service"
CADDYFILE = ROOT / "Caddyfile.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.example.yml"
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "init-staterelay.sh"
CONSTRAINTS = ROOT / "constraints.txt"
ROLES = ("app", "api", "auth", "alexa", "ifttt")


DEBIAN_PACKAGES = {"caddy": "caddy", "systemd-analyze": "systemd"}


def tool(name: str) -> str:
    """The path of a tool .ci/run installs; missing, the test skips (and fails under CI)."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (apt-get install {DEBIAN_PACKAGES[name]})")
    return found


# --- systemd --------------------------------------------------------------------------


def test_unit_has_the_required_directives() -> None:
    """A dedicated user, the state directory as data dir, restarts, clean stop, hardening."""
    unit = unit_directives(UNIT.read_text(encoding="utf-8"))
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["User"] == "staterelay"
    assert service["StateDirectory"] == "staterelay"
    assert "STATERELAY_DATA_DIR=%S/staterelay" in unit["Service"]["Environment"]
    assert service["ExecStart"].endswith("/staterelay serve")
    # Restarts forever, with a pause: no start limit that gives up for good.
    assert service["Restart"] == "always"
    assert int(service["RestartSec"]) >= 2
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert "StartLimitBurst" not in unit["Unit"]
    # Up only once the network is and the clock has been set (a Pi has no RTC).
    for key in ("After", "Wants"):
        targets = " ".join(unit["Unit"][key]).split()
        assert {"network-online.target", "time-sync.target"} <= set(targets), key
    assert service["KillSignal"] == "SIGTERM"
    # The stop budget covers the server's own shutdown_timeout (10 s) with room to spare.
    assert int(service["TimeoutStopSec"]) >= 20
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
    }.items():
        assert service[key] == value, key
    assert "@system-service" in unit["Service"]["SystemCallFilter"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this venv's staterelay (verify checks it exists)."""
    script = Path(sys.executable).parent / "staterelay"
    assert script.exists(), "the test venv has no staterelay script; pip install -e ."
    text = UNIT.read_text(encoding="utf-8")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={script}", text, flags=re.M)
    path = tmp_path / "staterelay.service"
    path.write_text(text, encoding="utf-8")
    return path


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own parser finds no error and no ignored line."""
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(_unit_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # systemd only warns about a misspelt key or a bad value; those count as errors here.
    problems = [line for line in result.stderr.splitlines() if "staterelay.service" in line]
    assert problems == [], result.stderr


def test_systemd_rates_the_unit_well_hardened(tmp_path: Path) -> None:
    """``systemd-analyze security`` scores the sandbox at most 2.0 (0 is best, 10 worst)."""
    result = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=true",
            "--no-pager",
            str(_unit_for_this_machine(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


# --- Caddy ----------------------------------------------------------------------------


def _caddy(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "caddy-home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    return subprocess.run(
        [tool("caddy"), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def _adapted_routes(caddyfile: Path, tmp_path: Path) -> list[tuple[list[str], list[str]]]:
    """(host names, upstream addresses) of every site in a Caddyfile, from ``caddy adapt``."""
    result = _caddy(["adapt", "--config", str(caddyfile), "--adapter", "caddyfile"], tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    sites: list[tuple[list[str], list[str]]] = []
    for server in config["apps"]["http"]["servers"].values():
        for route in server["routes"]:
            hosts = [h for match in route.get("match", []) for h in match.get("host", [])]
            upstreams = [u["dial"] for u in _find(route, "upstreams")]
            sites.append((hosts, upstreams))
    return sites


def _find(node: Any, key: str) -> list[Any]:
    """Every list under ``key`` anywhere in a JSON tree, concatenated."""
    found: list[Any] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key and isinstance(value, list):
                found.extend(value)
            else:
                found.extend(_find(value, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_find(item, key))
    return found


def test_caddy_validates_the_example(tmp_path: Path) -> None:
    """``caddy validate`` loads the Caddyfile with both layouts, and it is ``caddy fmt``-clean."""
    result = _caddy(["validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
    formatted = _caddy(["fmt", str(CADDYFILE)], tmp_path)
    assert formatted.returncode == 0, formatted.stderr
    assert formatted.stdout == CADDYFILE.read_text(encoding="utf-8")


def test_caddy_layouts_match_staterelay_hosts(tmp_path: Path) -> None:
    """One name proxies everything; the five hosts are exactly the server.hosts the file shows."""
    sites = _adapted_routes(CADDYFILE, tmp_path)
    assert len(sites) == 2
    single, split = sorted(sites, key=lambda site: len(site[0]))
    assert single == (["home.example.com"], ["127.0.0.1:8080"])
    assert split[1] == ["127.0.0.1:8080"]

    # The config snippet in the file's comments, taken as the user would paste it.
    text = CADDYFILE.read_text(encoding="utf-8")
    snippet = text.split("# --- Layout 2")[1].split("\napp.")[0]
    config_text = "\n".join(
        line.removeprefix("# ").removeprefix("#")
        for line in snippet.splitlines()
        if line.startswith("#   ") or line.startswith("#     ")
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_text, encoding="utf-8")
    settings = load_settings(config_file, data_dir=tmp_path / "data", environ={})
    hosts = {role: getattr(settings.server.hosts, role) for role in ROLES}
    assert sorted(split[0]) == sorted(hosts.values())
    assert settings.public_url == f"https://{hosts['app']}"
    router = HostRouter(settings.server.hosts, SurfaceTable.of(BUILTIN))
    for role, path in {
        "app": "/dashboard",
        "api": "/api/v1/devices",
        "auth": "/oauth/token",
        "alexa": "/alexa/smart_home",
        "ifttt": "/ifttt/v1/status",
    }.items():
        assert router.allows(hosts[role], path), (role, path)


# --- Docker ---------------------------------------------------------------------------


def test_dockerfile_runs_as_non_root_with_a_data_volume() -> None:
    """python:3.11 slim, a non-root user, /data as volume and data dir, port 8080, serve."""
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    final = stages(instructions)[-1]
    for stage in stages(instructions):
        assert stage[0].args.split()[0].startswith("python:3.11.")
    users = [i.args for i in final if i.keyword == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert env_of(final)["STATERELAY_DATA_DIR"] == "/data"
    volumes = [i for i in final if i.keyword == "VOLUME"]
    assert volumes
    assert json.loads(volumes[-1].args) == ["/data"]
    assert [i.args for i in final if i.keyword == "EXPOSE"] == ["8080"]
    cmd = [i for i in final if i.keyword == "CMD"][-1].exec_form()
    assert cmd == ["staterelay", "serve", "--host", "0.0.0.0"]


def test_dockerfile_pins_its_base_image_to_one_release() -> None:
    """Every stage starts from the same python:3.11.<patch>-slim-bookworm: no floating tag."""
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    bases = {stage[0].args.split()[0] for stage in stages(instructions)}
    assert len(bases) == 1, bases
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert [i for i in instructions if i.keyword == "ARG" and "PYTHON" in i.args] == []


def test_dockerfile_installs_with_the_constraints_file() -> None:
    """The final stage copies constraints.txt from the context and every pip install in it
    uses the file."""
    final = stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))[-1]
    copies = {
        instruction.words()[-1]: instruction.words()[0]
        for instruction in final
        if instruction.keyword == "COPY" and "from" not in instruction.flags()
    }
    assert copies == {"/wheels/constraints.txt": "constraints.txt"}
    installs = [
        part
        for instruction in final
        if instruction.keyword == "RUN"
        for part in re.split(r"&&|;", instruction.args)
        if re.search(r"\bpip install\b", part)
    ]
    assert len(installs) == 2  # the wheel, and the extras when EXTRAS is set
    for command in installs:
        assert "--constraint /wheels/constraints.txt" in command, command


def test_constraints_pin_every_runtime_dependency_and_nothing_else() -> None:
    """Each distribution staterelay[postgres,redis] needs is pinned with ==, to a version its
    dependents accept; no test tool and not the project itself."""
    lines = [
        line
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins: dict[str, str] = {}
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", line), line
        name, _, version = line.partition("==")
        pins[canonicalize_name(name)] = version
    needed = runtime_requirements()
    assert set(pins) == set(needed)
    assert "staterelay" not in pins
    assert {"pytest", "mypy", "ruff", "hypothesis", "playwright", "build"}.isdisjoint(pins)
    assert {"asyncpg", "redis", "aiohttp", "cryptography", "argon2-cffi-bindings"} <= set(pins)
    for name, requirements in needed.items():
        for requirement in requirements:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} breaks {requirement}"
            )


def test_dockerfile_healthcheck_asks_readyz_with_python() -> None:
    """The healthcheck needs nothing the slim image lacks (no curl, no wget)."""
    final = stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))[-1]
    (check,) = [i for i in final if i.keyword == "HEALTHCHECK"]
    command = check.exec_form()
    assert command is not None
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/readyz" in command[2]
    assert not re.search(r"\b(curl|wget)\b", check.args)
    assert set(check.flags()) >= {"interval", "timeout", "start-period", "retries"}


def test_dockerignore_lets_in_only_what_the_build_copies() -> None:
    """Nothing but the build inputs reaches the daemon: no .venv, tests, .git or data."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for instruction in parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction.keyword == "COPY" and "from" not in instruction.flags():
            copied.update(word.rstrip("/") for word in instruction.words()[:-1])
    assert copied == allowed
    for name in copied:
        assert (ROOT / name).exists(), name
    # What pip needs to build the wheel: the project file, its readme and the package.
    assert {"pyproject.toml", "README.md", "staterelay"} <= copied


# What a .env next to the compose file sets (docs/hosting.md): made-up values.
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "superuser-secret-123",
    "STATERELAY_OWNER_PASSWORD": "owner-secret-4567",
    "STATERELAY_APP_PASSWORD": "app-secret-89012",
    "STATERELAY_METRICS_TOKEN": "metrics-token-0123456789",
}


def _compose() -> dict[str, Any]:
    """The compose file as ``docker compose config`` would see it with ``COMPOSE_ENV``."""
    document = yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8"), COMPOSE_ENV))
    assert isinstance(document, dict)
    return document


def test_compose_example_has_the_hosted_layout() -> None:
    """Two replicas of this image on PostgreSQL and Redis, Caddy in front with 80/443."""
    services = _compose()["services"]
    replicas = [name for name in services if name.startswith("staterelay-")]
    assert len(replicas) == 2
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    for name in replicas:
        service = services[name]
        assert service["build"]["context"] == "."
        # The image gets the PostgreSQL and Redis drivers through the Dockerfile's EXTRAS.
        wanted = service["build"]["args"]["EXTRAS"].split(",")
        assert sorted(wanted) == ["postgres", "redis"]
        assert all(extra in extras for extra in wanted)
        env = service["environment"]
        assert env["STATERELAY_DATABASE_URL"].startswith("postgresql://")
        assert env["STATERELAY_DATABASE_URL"].split("@")[1].startswith("postgres:")
        assert env["STATERELAY_REDIS_URL"].startswith("redis://redis:")
        assert env["STATERELAY_SERVER_PUBLIC_URL"].startswith("https://")
        assert "staterelay-data:/data" in service["volumes"]
        # The settings the replicas get load as they are.
        environ = {**env, "STATERELAY_DATA_DIR": "/data"}
        settings = load_settings(environ=environ)
        assert settings.database.url == env["STATERELAY_DATABASE_URL"]
        assert all(getattr(settings.server.hosts, role) for role in ROLES)
    # The second replica starts once the first has made the shared secret key.
    assert services["staterelay-2"]["depends_on"]["staterelay-1"]["condition"] == (
        "service_healthy"
    )
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["caddy"]["image"].startswith("caddy:")
    assert {"80:80", "443:443"} <= set(services["caddy"]["ports"])


def test_compose_secrets_have_no_defaults() -> None:
    """Every value the file takes from .env is required: none of them has a fallback."""
    used = compose_variables(COMPOSE.read_text(encoding="utf-8"))
    assert {name for name, _ in used} == set(COMPOSE_ENV)
    assert all(kind == "?" for _, kind in used), used
    with pytest.raises(AssertionError, match="compose would refuse to start"):
        interpolate(COMPOSE.read_text(encoding="utf-8"), {})


def _replica_env() -> dict[str, str]:
    env: dict[str, str] = _compose()["services"]["staterelay-1"]["environment"]
    return env


def _init_script_sql() -> str:
    return INIT_SCRIPT.read_text(encoding="utf-8").split("<<'SQL'", 1)[1]


def test_compose_app_role_is_neither_superuser_nor_owner() -> None:
    """The replicas connect as the app role; migrations run as the owner; the superuser is
    neither. The init script makes both roles without superuser or BYPASSRLS, and the owner,
    not the app role, owns the database."""
    document = _compose()
    env = _replica_env()
    app = urlsplit(env["STATERELAY_DATABASE_URL"])
    owner = urlsplit(env["STATERELAY_DATABASE_MIGRATE_URL"])
    superuser = document["services"]["postgres"]["environment"]["POSTGRES_USER"]
    assert app.username == "staterelay_app"
    assert owner.username == "staterelay_owner"
    assert superuser not in (app.username, owner.username)
    assert app.password == COMPOSE_ENV["STATERELAY_APP_PASSWORD"]
    assert owner.password == COMPOSE_ENV["STATERELAY_OWNER_PASSWORD"]
    assert (app.hostname, app.path) == (owner.hostname, owner.path) == ("postgres", "/staterelay")
    sql = " ".join(_init_script_sql().split())
    for role in ("owner", "app"):
        assert f'CREATE ROLE :"{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS' in sql
    assert 'CREATE DATABASE :"db" OWNER :"owner";' in sql
    script = INIT_SCRIPT.read_text(encoding="utf-8")
    assert "STATERELAY_OWNER_ROLE:-staterelay_owner" in script
    assert "STATERELAY_APP_ROLE:-staterelay_app" in script
    assert "STATERELAY_DB:-staterelay" in script
    mounts = document["services"]["postgres"]["volumes"]
    assert f"./{INIT_SCRIPT.relative_to(ROOT)}:/docker-entrypoint-initdb.d/10-staterelay.sh:ro" in (
        mounts
    )
    settings = load_settings(environ={**env, "STATERELAY_DATA_DIR": "/data"})
    assert settings.database.migrate_url == env["STATERELAY_DATABASE_MIGRATE_URL"]


def test_compose_trusts_only_the_proxy_and_sets_a_metrics_token() -> None:
    """X-Forwarded-For counts only from Caddy's fixed address, inside the compose network."""
    document = _compose()
    settings = load_settings(environ={**_replica_env(), "STATERELAY_DATA_DIR": "/data"})
    caddy = document["services"]["caddy"]["networks"]["staterelay"]["ipv4_address"]
    assert settings.server.trusted_proxies == (f"{caddy}/32",)
    (subnet,) = [c["subnet"] for c in document["networks"]["staterelay"]["ipam"]["config"]]
    assert ipaddress.ip_address(caddy) in ipaddress.ip_network(subnet)
    assert settings.metrics.token == COMPOSE_ENV["STATERELAY_METRICS_TOKEN"]
    assert settings.redis.url == "redis://redis:6379/0"


def test_compose_names_only_services_and_resources_it_defines() -> None:
    """depends_on, host names in URLs, proxy upstreams, scrape targets, volumes, configs,
    secrets and networks all point at something the file defines; bind mounts exist."""
    document = _compose()
    services = document["services"]
    named: set[str] = set()
    for service in services.values():
        named |= set(service.get("depends_on", {}))
        for name in ("configs", "secrets"):
            for entry in service.get(name, []):
                source = entry["source"] if isinstance(entry, dict) else entry
                assert source in document[name], source
        networks = service.get("networks", {})
        for network in networks if isinstance(networks, list) else list(networks):
            assert network in document["networks"], network
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
            else:
                assert source in document["volumes"], source
    env = _replica_env()
    for key in (
        "STATERELAY_DATABASE_URL",
        "STATERELAY_DATABASE_MIGRATE_URL",
        "STATERELAY_REDIS_URL",
    ):
        named.add(urlsplit(env[key]).hostname or "")
    caddyfile = document["configs"]["caddyfile"]["content"]
    named |= set(re.findall(r"\b([a-z0-9-]+):8080\b", caddyfile))
    prometheus = yaml.safe_load(document["configs"]["prometheus"]["content"])
    for job in prometheus["scrape_configs"]:
        for group in job["static_configs"]:
            named |= {target.split(":")[0] for target in group["targets"]}
    assert named - set(services) == set()
    assert {"staterelay-1", "staterelay-2", "postgres", "redis"} <= named


def test_compose_prometheus_config_scrapes_both_replicas_and_loads_the_alerts(
    tmp_path: Path,
) -> None:
    """``promtool check config`` accepts the inlined config (paths pointed at this checkout)."""
    document = _compose()
    prometheus = document["services"]["prometheus"]
    (rules_mount,) = [v for v in prometheus["volumes"] if v.startswith("./")]
    source, target = rules_mount.split(":")[:2]
    token = tmp_path / "metrics_token"
    token.write_text(COMPOSE_ENV["STATERELAY_METRICS_TOKEN"], encoding="utf-8")
    text = document["configs"]["prometheus"]["content"]
    text = text.replace(target, str(ROOT / source)).replace(
        "/run/secrets/metrics_token", str(token)
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    (job,) = yaml.safe_load(text)["scrape_configs"]
    assert job["job_name"] == "staterelay"  # the job the alert rules and dashboard name
    assert document["secrets"]["metrics_token"] == {"environment": "STATERELAY_METRICS_TOKEN"}


async def test_compose_init_script_makes_roles_row_level_security_holds(tmp_path: Path) -> None:
    """The init script, run for real on this machine's PostgreSQL (with names of the test's
    own), makes a database the app migrates as the owner and serves as a role that is no
    superuser, has no BYPASSRLS and owns nothing."""
    require_postgres()
    suffix = uuid.uuid4().hex[:10]
    names = {
        "STATERELAY_DB": f"srcompose_{suffix}",
        "STATERELAY_OWNER_ROLE": f"srcompose_owner_{suffix}",
        "STATERELAY_APP_ROLE": f"srcompose_app_{suffix}",
    }
    env = {
        **os.environ,
        **names,
        "PGHOST": "127.0.0.1",
        "PGPORT": "5432",
        "POSTGRES_USER": "postgres",
        "STATERELAY_OWNER_PASSWORD": COMPOSE_ENV["STATERELAY_OWNER_PASSWORD"],
        "STATERELAY_APP_PASSWORD": COMPOSE_ENV["STATERELAY_APP_PASSWORD"],
    }
    tool("psql")
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        result = subprocess.run(
            ["sh", str(INIT_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        db, owner, app = (
            names[k] for k in ("STATERELAY_DB", "STATERELAY_OWNER_ROLE", "STATERELAY_APP_ROLE")
        )
        url = f"postgresql://{{}}:{{}}@127.0.0.1:5432/{db}"
        store = open_store(
            url.format(app, COMPOSE_ENV["STATERELAY_APP_PASSWORD"]),
            migrate_url=url.format(owner, COMPOSE_ENV["STATERELAY_OWNER_PASSWORD"]),
        )
        await store.open()
        try:
            report = await store.settings_report()
        finally:
            await store.close()
        assert report["row_level_security"] == "enforced"
        roles = {
            row["rolname"]: row
            for row in await admin.fetch(
                "SELECT rolname, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles"
                " WHERE rolname = ANY($1::text[])",
                [owner, app],
            )
        }
        for role in (owner, app):
            assert not any(roles[role][k] for k in ("rolsuper", "rolbypassrls", "rolcreatedb")), (
                role
            )
        assert (
            await admin.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", db
            )
            == owner
        )
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}")
        try:
            owned_by_app = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles"
                " WHERE rolname = $1)",
                app,
            )
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind = 'r' AND relrowsecurity AND relforcerowsecurity"
            )
        finally:
            await conn.close()
        assert owned_by_app == 0
        assert tables >= 10
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{names["STATERELAY_DB"]}" WITH (FORCE)')
        for key in ("STATERELAY_APP_ROLE", "STATERELAY_OWNER_ROLE"):
            await admin.execute(f'DROP ROLE IF EXISTS "{names[key]}"')
        await admin.close()


def test_compose_caddyfile_is_valid_and_balances_both_replicas(tmp_path: Path) -> None:
    """The Caddyfile inlined in the compose file validates and proxies to both replicas."""
    document = _compose()
    caddy = document["services"]["caddy"]
    (config,) = caddy["configs"]
    assert config["target"] == "/etc/caddy/Caddyfile"
    path = tmp_path / "Caddyfile"
    path.write_text(document["configs"][config["source"]]["content"], encoding="utf-8")
    result = _caddy(["validate", "--config", str(path), "--adapter", "caddyfile"], tmp_path)
    assert result.returncode == 0, result.stderr
    (site,) = _adapted_routes(path, tmp_path)
    hosts, upstreams = site
    replica_env = document["services"]["staterelay-1"]["environment"]
    assert sorted(hosts) == sorted(
        replica_env[f"STATERELAY_SERVER_HOSTS_{r.upper()}"] for r in ROLES
    )
    assert sorted(upstreams) == ["staterelay-1:8080", "staterelay-2:8080"]


@pytest.mark.parametrize(
    "path", [UNIT, CADDYFILE, DOCKERFILE, COMPOSE, DOCKERIGNORE, CONSTRAINTS, INIT_SCRIPT]
)
def test_deployment_files_ship_in_the_sdist(path: Path) -> None:
    """MANIFEST.in names each deployment file (or grafts its folder), so the source release
    carries it."""
    words = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").split()
    top = path.relative_to(ROOT).parts[0]
    assert path.name in words or ("graft" in words and top in words)
