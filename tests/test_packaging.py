"""Packaging: the sdist and wheel carry every file, and an installed wheel runs.

Builds run offline (``--no-isolation``, the build tools come with the test extras) in a
copy of the source, so the work tree is never touched. Installs go into fresh virtual
environments that see this environment's dependencies but not its own staterelay.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from staterelay import __version__
from staterelay.cli import config_template
from tests.deployfiles import ROOT, Instruction, env_of, parse_dockerfile, stages
from tests.processes import free_port

pytestmark = pytest.mark.slow

PACKAGE = ROOT / "staterelay"
# What MANIFEST.in puts in the sdist besides the package.
SDIST_EXTRAS = (
    "pyproject.toml",
    "README.md",
    "MANIFEST.in",
    "config.example.yaml",
    "Dockerfile",
    ".dockerignore",
    "docker-compose.example.yml",
    "staterelay.service",
    "Caddyfile.example",
    "constraints.txt",
    "docs/install.md",
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/alerts_test.yml",
    "deploy/grafana/staterelay.json",
    "deploy/postgres/init-staterelay.sh",
)
# pip reads --no-* options from the environment inverted: "0" turns isolation off.
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_INPUT": "1"}


def package_files() -> list[str]:
    """Every file of the package in the work tree, as wheel paths (caches left out)."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def copy_source(target: Path) -> Path:
    """The project's source as a build would see it, plus a stray cache file to leave out."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SDIST_EXTRAS:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    shutil.copytree(ROOT / "docs", target / "docs", ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(PACKAGE, target / "staterelay", ignore=ignore)
    stray = target / "staterelay" / "__pycache__" / "cli.cpython-311.pyc"
    stray.parent.mkdir()
    stray.write_bytes(b"not for the wheel")
    return target


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel): ``python -m build`` makes the sdist, then the wheel from the sdist."""
    source = copy_source(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_wheel_carries_every_package_file(dists: tuple[Path, Path]) -> None:
    """Templates, static files, migrations, the config template, py.typed, and any new data."""
    names = set(zipfile.ZipFile(dists[1]).namelist())
    missing = [name for name in package_files() if name not in names]
    assert missing == []
    for required in (
        "staterelay/config_template.yaml",
        "staterelay/py.typed",
        "staterelay/templates/base.html",
        "staterelay/static/app.css",
        "staterelay/store/migrations/sqlite/0001_init.sql",
    ):
        assert required in names
    assert not [name for name in names if name.endswith(".pyc") or "__pycache__" in name]


def test_wheel_metadata_declares_the_console_script(dists: tuple[Path, Path]) -> None:
    """``staterelay`` on PATH after install, and the version this checkout reports."""
    wheel = zipfile.ZipFile(dists[1])
    assert dists[1].name == f"staterelay-{__version__}-py3-none-any.whl"
    info = f"staterelay-{__version__}.dist-info"
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "staterelay = staterelay.launch:main" in entry_points
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert "Requires-Python: >=3.11" in metadata


def test_sdist_carries_the_package_docs_and_deployment_files(dists: tuple[Path, Path]) -> None:
    """The source release rebuilds the same wheel and ships the examples."""
    with tarfile.open(dists[0]) as sdist:
        prefix = f"staterelay-{__version__}/"
        names = {name.removeprefix(prefix) for name in sdist.getnames()}
    missing = [name for name in [*package_files(), *SDIST_EXTRAS] if name not in names]
    assert missing == []


# --- installing into a fresh environment ----------------------------------------------


def dependencies_only(target: Path) -> Path:
    """A folder that shows this environment's installed packages, except staterelay itself."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if name.startswith(("staterelay", "__editable__", "_distutils_hack")) or name.endswith(
            ".pth"
        ):
            continue
        if name == "__pycache__":
            continue
        (target / name).symlink_to(entry)
    return target


def fresh_venv(path: Path) -> Path:
    """A new virtual environment whose Python also finds this one's dependencies."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = dependencies_only(path.parent / f"{path.name}-deps")
    (Path(site) / "zz-test-dependencies.pth").write_text(f"{deps}\n", encoding="utf-8")
    return path


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command outside this checkout; returns stdout, fails the test on error."""
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE_PIP, **(env or {})},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{shlex.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class InstalledServer:
    """``staterelay serve`` from an installed environment, on a free loopback port."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.command = [*command, "--port", str(self.port)]
        self.env = {**os.environ, **env, "STATERELAY_SERVER_PORT": str(self.port)}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start and wait for /readyz."""
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    assert self.proc.stderr is not None
                    raise AssertionError(self.proc.stderr.read().decode(errors="replace"))
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("the installed server did not become ready")

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        self.proc.terminate()
        code = self.proc.wait(timeout=20)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code

    def ensure_stopped(self) -> None:
        """Kill the process if a test failed before stopping it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def servers() -> Iterator[list[InstalledServer]]:
    """Servers a test starts; killed if it fails before stopping them."""
    started: list[InstalledServer] = []
    yield started
    for server in started:
        server.ensure_stopped()


async def serves_pages_from_package_data(server: InstalledServer) -> None:
    """A page rendered from templates and a static file come back from the installed copy."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/login") as response:
            assert response.status == 200
            assert "<html" in (await response.text()).lower()
        async with http.get(f"{server.url}/static/app.css") as response:
            assert response.status == 200


async def test_installed_wheel_runs_init_and_serve(
    dists: tuple[Path, Path], tmp_path: Path, servers: list[InstalledServer]
) -> None:
    """pip install of the wheel gives a working ``staterelay``: version, init, serve."""
    venv = fresh_venv(tmp_path / "venv")
    run([str(venv / "bin" / "pip"), "install", str(dists[1])], cwd=tmp_path)
    where = run(
        [str(venv / "bin" / "python"), "-c", "import staterelay; print(staterelay.__file__)"],
        cwd=tmp_path,
    )
    assert where.startswith(str(venv)), where
    script = venv / "bin" / "staterelay"
    assert (
        run([str(script), "--version"], cwd=tmp_path).strip()
        == f"StateRelay, version {__version__}"
    )
    assert __version__ in run(
        [str(venv / "bin" / "python"), "-m", "staterelay", "--version"], cwd=tmp_path
    )
    data = tmp_path / "data"
    run([str(script), "init", "--data-dir", str(data)], cwd=tmp_path)
    assert (data / "config.yaml").read_text(encoding="utf-8") == config_template()

    server = InstalledServer([str(script), "serve", "--data-dir", str(data)], {}, tmp_path)
    servers.append(server)
    await server.start()
    await serves_pages_from_package_data(server)
    assert server.stop() == 0


# --- the Dockerfile, step by step -----------------------------------------------------


class DockerBuild:
    """Carries out a Dockerfile's stages on this machine, each stage's paths below its own root.

    COPY and WORKDIR map container paths into the stage's root; RUN steps that call pip run
    with the stage's Python (the builder's: this one; the final image's: a fresh venv). RUN
    steps that set up the system (users, ownership) are what a container needs, not a test,
    and are checked to do nothing else.
    """

    SYSTEM_COMMANDS = ("useradd", "mkdir", "chown", "chmod", "rm")

    def __init__(self, base: Path, context: Path) -> None:
        self.base = base
        self.context = context
        self.roots: dict[str, Path] = {}

    def path(self, container_path: str, workdir: str, root: Path) -> Path:
        """A container path, absolute or relative to the WORKDIR, under a stage's root."""
        joined = container_path if container_path.startswith("/") else f"{workdir}/{container_path}"
        return root / joined.lstrip("/")

    def final_path(self, container_path: str) -> Path:
        """Where a path of the last stage carried out is."""
        return self.path(container_path, "/", list(self.roots.values())[-1])

    def run_stage(self, stage: list[Instruction], python: Path) -> None:
        """Carry out one stage."""
        words = stage[0].words()
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(self.roots))
        root = self.roots[name] = self.base / name
        root.mkdir(parents=True)
        workdir = "/"
        args: dict[str, str] = {}
        for instruction in stage[1:]:
            keyword = instruction.keyword
            if keyword == "WORKDIR":
                workdir = instruction.args
                self.path(workdir, "/", root).mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                *sources, dest = instruction.words()
                from_stage = instruction.flags().get("from")
                for source in sources:
                    origin = (
                        self.path(source, "/", self.roots[from_stage])
                        if from_stage
                        else self.context / source
                    )
                    target = self.path(dest, workdir, root)
                    if dest.endswith("/") or len(sources) > 1:
                        target = target / Path(source).name
                    if origin.is_dir():
                        shutil.copytree(origin, target, dirs_exist_ok=True)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(origin, target)
            elif keyword == "ARG":
                name, _, default = instruction.args.partition("=")
                args[name] = shlex.split(default)[0] if default.strip() else ""
            elif keyword == "RUN":
                self.run_command(instruction.args, workdir, root, python, args)

    def run_command(
        self, command: str, workdir: str, root: Path, python: Path, args: dict[str, str]
    ) -> None:
        """A RUN step: pip steps run for real (through bash, for globs, ``if`` and build
        arguments), system set-up steps are only checked."""
        for part in command.split("&&"):
            words = shlex.split(part)
            if words[0] in self.SYSTEM_COMMANDS:
                continue
            assert words[0] in ("pip", "if"), f"unexpected RUN step: {part}"
            # Absolute container paths (/wheels, /src) live below the stage's root.
            line = re.sub(r"(?<=[\s\"'])/(?!usr/|bin/|etc/|dev/|tmp/)", f"{root}/", f" {part}")
            python_pip = f"{shlex.quote(str(python))} -m pip"
            line = re.sub(r"\bpip (?=install|wheel)", f"{python_pip} ", line)
            result = subprocess.run(
                ["bash", "-c", line],
                cwd=self.path(workdir, "/", root),
                capture_output=True,
                text=True,
                env={**os.environ, **OFFLINE_PIP, **args},
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"


def docker_context(target: Path) -> Path:
    """The build context the daemon would get: the files .dockerignore lets in."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    target.mkdir()
    for line in lines:
        if line.startswith("!"):
            name = line[1:].rstrip("/")
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=ignore)
            else:
                shutil.copy2(source, target / name)
    return target


async def test_dockerfile_steps_build_an_image_that_serves_and_reports_health(
    tmp_path: Path, servers: list[InstalledServer]
) -> None:
    """The Dockerfile's build and install steps give a server its HEALTHCHECK calls healthy."""
    dockerfile = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    builder, final = stages(dockerfile)
    build = DockerBuild(tmp_path / "stages", docker_context(tmp_path / "context"))
    build.run_stage(builder, Path(sys.executable))
    image = fresh_venv(tmp_path / "image")
    build.run_stage(final, image / "bin" / "python")

    env = env_of(final)
    data = build.final_path(env["STATERELAY_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    image_env = {
        **env,
        "STATERELAY_DATA_DIR": str(data),
        "PATH": f"{image / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    (cmd,) = [i.exec_form() for i in final if i.keyword == "CMD"]
    assert cmd is not None
    # Listen on loopback here: the container's 0.0.0.0 is its own network namespace.
    command = [str(image / "bin" / cmd[0]), *cmd[1:]]
    command[command.index("--host") + 1] = "127.0.0.1"
    server = InstalledServer(command, image_env, tmp_path)
    servers.append(server)

    (check,) = [i.exec_form() for i in final if i.keyword == "HEALTHCHECK"]
    assert check is not None
    healthcheck = [str(image / "bin" / check[0]), *check[1:]]

    def healthy() -> int:
        return subprocess.run(
            healthcheck,
            env={**os.environ, **image_env, "STATERELAY_SERVER_PORT": str(server.port)},
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode

    assert healthy() != 0  # nothing listens yet
    await server.start()
    assert (data / "secret.key").exists()
    assert healthy() == 0
    await serves_pages_from_package_data(server)
    assert server.stop() == 0
    assert healthy() != 0
