"""Deployment files: the systemd unit, the Caddyfile, the Dockerfile and the compose example.

Real tools check them (``systemd-analyze``, ``caddy``): where one is missing its tests skip
with the reason, and fail under CI=true, which installs both. The Dockerfile is also built
and run step by step in tests/test_packaging.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from staterelay.hosts import HostRouter
from staterelay.settings import load_settings
from tests.deployfiles import ROOT, env_of, parse_dockerfile, stages, unit_directives
from tests.skips import unavailable

UNIT = ROOT / "staterelay.service"
CADDYFILE = ROOT / "Caddyfile.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.example.yml"
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
    assert service["Restart"] == "on-failure"
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
    router = HostRouter(settings.server.hosts)
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
    """python:3.11-slim, a non-root user, /data as volume and data dir, port 8080, serve."""
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    final = stages(instructions)[-1]
    assert final[0].args.split()[0] == "python:3.11-slim"
    for stage in stages(instructions):
        assert stage[0].args.split()[0].startswith("python:3.11-slim")
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


def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
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


@pytest.mark.parametrize("path", [UNIT, CADDYFILE, DOCKERFILE, COMPOSE, DOCKERIGNORE])
def test_deployment_files_ship_in_the_sdist(path: Path) -> None:
    """MANIFEST.in names each deployment file, so the source release carries it."""
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    assert path.name in manifest.split()
