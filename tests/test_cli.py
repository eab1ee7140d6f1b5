"""The command line: init, user create, apikey create, errors, and serve as a real process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from staterelay import cli as cli_module
from staterelay.cli import cli, config_template
from staterelay.core import Core, InProcessBus
from staterelay.core.crypto import load_or_create_secret
from staterelay.core.passwords import verify_password
from staterelay.core.records import Principal, User
from staterelay.logs import configure_logging
from staterelay.settings import LogSettings, Settings, load_settings
from staterelay.store import open_store
from tests.instances import with_core

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own STATERELAY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("STATERELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that does not exist yet."""
    return tmp_path / "data"


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the command line in-process, with stdout and stderr kept apart."""
    return CliRunner().invoke(cli, list(args), input=stdin, env=env)


def one_line(text: str) -> str:
    """The only line of ``text``."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


async def _with_core(
    settings: Settings, email: str, token: str | None
) -> tuple[User, Principal | None]:
    store = open_store(settings.database_url, durability=settings.database.durability)
    core = Core(
        store, InProcessBus(), instance_secret=load_or_create_secret(settings.secret_key_path)
    )
    await store.open()
    try:
        user = await core.users.by_email(email)
        principal = await core.auth.authenticate(token) if token is not None else None
        return user, principal
    finally:
        await core.bus.close()
        await store.close()


def lookup(data_dir: Path, email: str, token: str | None = None) -> tuple[User, Principal | None]:
    """Open the database again, find the user and authenticate ``token``."""
    settings = load_settings(data_dir=data_dir, environ={})
    return asyncio.run(_with_core(settings, email, token))


# init ----------------------------------------------------------------------------------------


def test_init_writes_the_commented_config_into_the_data_dir(data_dir: Path) -> None:
    """The file is the example text, private to its owner, and loads to the defaults."""
    result = invoke("init", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    path = data_dir / "config.yaml"
    assert path.read_text(encoding="utf-8") == config_template()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in result.stdout
    assert load_settings(path, data_dir=data_dir, environ={}) == Settings(data_dir=data_dir)


def test_init_refuses_to_overwrite_without_force(data_dir: Path) -> None:
    """An existing file is kept unless --force is given."""
    data_dir.mkdir()
    path = data_dir / "config.yaml"
    path.write_text("server:\n  port: 9000\n", encoding="utf-8")
    refused = invoke("init", "--data-dir", str(data_dir))
    assert refused.exit_code == 1
    assert "--force" in one_line(refused.stderr)
    assert path.read_text(encoding="utf-8") == "server:\n  port: 9000\n"
    forced = invoke("init", "--force", "--data-dir", str(data_dir))
    assert forced.exit_code == 0, forced.output
    assert path.read_text(encoding="utf-8") == config_template()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_writes_to_a_named_file(tmp_path: Path) -> None:
    """init FILE writes there and says how to serve with it."""
    target = tmp_path / "etc" / "staterelay.yaml"
    result = invoke("init", str(target), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == config_template()
    assert f"--config {target}" in result.stdout


# user and apikey -----------------------------------------------------------------------------


def test_user_and_apikey_create_give_a_working_key(data_dir: Path) -> None:
    """The printed key authenticates as the new user with the scope asked for."""
    created = invoke("user", "create", "--email", "ada@example.com", "--data-dir", str(data_dir))
    assert created.exit_code == 0, created.output
    user_id = one_line(created.stdout)
    assert user_id.startswith("usr_")
    made = invoke(
        "apikey",
        "create",
        "--email",
        "ada@example.com",
        "--scope",
        "write",
        "--name",
        "home assistant",
        "--data-dir",
        str(data_dir),
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.removesuffix("\n")
    assert made.stdout == key + "\n"  # just the key, so KEY=$(staterelay apikey create) works
    assert key.startswith("sr_")
    assert key not in made.stderr
    user, principal = lookup(data_dir, "ada@example.com", key)
    assert user.id == user_id
    assert user.password_hash is None
    assert user.is_admin is False
    assert principal is not None
    assert principal.user_id == user_id
    assert principal.scopes == frozenset({"read", "write"})


def test_apikey_scope_defaults_to_read(data_dir: Path) -> None:
    """Without --scope the key can read but not write."""
    assert (
        invoke("user", "create", "--email", "r@example.com", "--data-dir", str(data_dir)).exit_code
        == 0
    )
    made = invoke("apikey", "create", "--email", "r@example.com", "--data-dir", str(data_dir))
    assert made.exit_code == 0, made.output
    _, principal = lookup(data_dir, "r@example.com", made.stdout.strip())
    assert principal is not None
    assert principal.scopes == frozenset({"read"})


async def _add_devices(data_dir: Path, email: str, names: tuple[str, ...]) -> list[str]:
    settings = load_settings(data_dir=data_dir, environ={})
    store = open_store(settings.database_url, durability=settings.database.durability)
    core = Core(
        store, InProcessBus(), instance_secret=load_or_create_secret(settings.secret_key_path)
    )
    await store.open()
    try:
        user = await core.users.by_email(email)
        principal = Principal(
            tenant_id=user.tenant_id,
            user_id=user.id,
            scopes=frozenset({"read", "write"}),
            credential="cli",
            credential_id="test",
        )
        return [
            (await core.devices.create(principal, type="switch", name=name, source="cli")).id
            for name in names
        ]
    finally:
        await core.bus.close()
        await store.close()


def test_apikey_device_option_limits_the_key(data_dir: Path) -> None:
    """--device (repeatable) makes a key that reaches only those devices; unknown ids fail."""
    args = ("--email", "d@example.com", "--data-dir", str(data_dir))
    assert invoke("user", "create", *args).exit_code == 0
    lamp, fan, _ = asyncio.run(_add_devices(data_dir, "d@example.com", ("Lamp", "Fan", "TV")))
    made = invoke("apikey", "create", "--scope", "write", "--device", lamp, "--device", fan, *args)
    assert made.exit_code == 0, made.output
    assert f"limited to {lamp}, {fan}" in made.stderr
    _, principal = lookup(data_dir, "d@example.com", made.stdout.strip())
    assert principal is not None
    assert principal.device_ids == frozenset({lamp, fan})
    unrestricted = invoke("apikey", "create", *args)
    _, wide = lookup(data_dir, "d@example.com", unrestricted.stdout.strip())
    assert wide is not None
    assert wide.device_ids is None
    unknown = invoke("apikey", "create", "--device", "dev_nothere", *args)
    assert unknown.exit_code == 1
    assert one_line(unknown.stderr) == ("staterelay: no device 'dev_nothere' in this household")
    assert unknown.stdout == ""


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_password_from_stdin_drops_one_trailing_newline(data_dir: Path, ending: str) -> None:
    """echo "$PW" | staterelay user create --password-stdin stores exactly $PW."""
    result = invoke(
        "user",
        "create",
        "--email",
        "pw@example.com",
        "--password-stdin",
        "--admin",
        "--data-dir",
        str(data_dir),
        stdin=PASSWORD + ending,
    )
    assert result.exit_code == 0, result.output
    user, _ = lookup(data_dir, "pw@example.com")
    assert user.is_admin is True
    assert user.password_hash is not None
    assert verify_password(user.password_hash, PASSWORD)
    assert not verify_password(user.password_hash, PASSWORD + "\n")


def test_duplicate_email_is_one_line_and_exit_1(data_dir: Path) -> None:
    """A domain error is one line on stderr, no traceback."""
    args = ("user", "create", "--email", "twice@example.com", "--data-dir", str(data_dir))
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 1
    assert one_line(again.stderr) == (
        "staterelay: a user with the email twice@example.com exists; to give it a new "
        "password, run staterelay user set-password --email twice@example.com --password-stdin"
    )
    assert again.stdout == ""
    assert "Traceback" not in again.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("apikey", "create", "--email", "nobody@example.com"), None, "no user with this email"),
        (("user", "create", "--email", "not-an-email"), None, "email is not a valid address"),
        (("user", "create", "--email", "a@example.com", "--password-stdin"), "short\n", "password"),
    ],
)
def test_domain_errors_are_one_line_and_exit_1(
    data_dir: Path, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    """Unknown users and invalid input are reported in one line."""
    result = invoke(*args, "--data-dir", str(data_dir), stdin=stdin)
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert line.startswith("staterelay: ")
    assert message in line


# configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("serve",),
        ("user", "create", "--email", "a@example.com"),
        ("apikey", "create", "--email", "a@example.com"),
    ],
)
def test_invalid_config_file_exits_2_naming_the_key(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A bad value in the file is one line naming the key; nothing is started or written."""
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  port: abc\n", encoding="utf-8")
    data_dir = tmp_path / "data"
    result = invoke(*command, "--config", str(config), "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert (
        one_line(result.stderr) == "staterelay: config error: server.port: must be a whole number"
    )
    assert "Traceback" not in result.output
    assert not data_dir.exists()


def test_a_token_lifetime_alexa_refuses_is_a_config_error(tmp_path: Path) -> None:
    """Access tokens shorter than Alexa's 360 s minimum: serve refuses to start (exit 2)
    instead of letting account linking fail later."""
    config = tmp_path / "short.yaml"
    config.write_text("oauth:\n  access_token_ttl_seconds: 300\n", encoding="utf-8")
    data_dir = tmp_path / "data"
    result = invoke("serve", "--config", str(config), "--data-dir", str(data_dir))
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert line.startswith("staterelay: config error: oauth.access_token_ttl_seconds: ")
    assert "at least 360" in line
    assert not data_dir.exists()


def test_environment_error_exits_2_naming_the_key(data_dir: Path) -> None:
    """STATERELAY_SERVER_PORT=abc names server.port."""
    result = invoke(
        "user",
        "create",
        "--email",
        "a@example.com",
        "--data-dir",
        str(data_dir),
        env={"STATERELAY_SERVER_PORT": "abc"},
    )
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith("staterelay: config error: server.port: ")


def test_flag_error_exits_2_naming_the_key(data_dir: Path) -> None:
    """serve --port 70000 is checked like any other value."""
    result = invoke("serve", "--port", "70000", "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith("staterelay: config error: server.port: ")


def test_yaml_syntax_error_exits_2(tmp_path: Path) -> None:
    """A file that is not YAML is reported under the key config, with the line."""
    config = tmp_path / "broken.yaml"
    config.write_text("server:\n  port: [8080\n", encoding="utf-8")
    result = invoke("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert line.startswith(f"staterelay: config error: config: {config} is not valid YAML")
    assert "Traceback" not in result.output


def test_config_in_the_data_dir_is_read_without_config_flag(data_dir: Path) -> None:
    """<data-dir>/config.yaml is the default config file."""
    data_dir.mkdir()
    (data_dir / "config.yaml").write_text("log:\n  level: loud\n", encoding="utf-8")
    result = invoke("user", "create", "--email", "a@example.com", "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert "log.level" in one_line(result.stderr)


def test_config_file_from_environment(tmp_path: Path) -> None:
    """STATERELAY_CONFIG names the config file like --config."""
    config = tmp_path / "env.yaml"
    config.write_text("database:\n  durability: sometimes\n", encoding="utf-8")
    result = invoke(
        "user",
        "create",
        "--email",
        "a@example.com",
        "--data-dir",
        str(tmp_path / "data"),
        env={"STATERELAY_CONFIG": str(config)},
    )
    assert result.exit_code == 2
    assert "database.durability" in one_line(result.stderr)


def test_serve_help_explains_the_loopback_default() -> None:
    """--host says why 127.0.0.1 is the default and how to expose the server."""
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "127.0.0.1" in text
    assert "only this machine" in text
    assert "0.0.0.0" in text


# logging -------------------------------------------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("staterelay.access")
    access_level = access.level
    yield root
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    access.setLevel(access_level)


def test_json_logs_are_one_object_per_line(root_logger: logging.Logger) -> None:
    """time, level, logger, message, and the request id of a request's line."""
    stream = io.StringIO()
    configure_logging(LogSettings(format="json"), stream=stream)
    logging.getLogger("staterelay.access").info("GET %s 200", "/readyz", extra={"request_id": "r1"})
    logging.getLogger("staterelay.test").warning("two\nlines")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info"
    assert first["logger"] == "staterelay.access"
    assert first["message"] == "GET /readyz 200"
    assert first["request_id"] == "r1"
    assert first["time"].endswith("+00:00")
    assert second["message"] == "two\nlines"
    assert "request_id" not in second


def test_text_logs_and_levels(root_logger: logging.Logger) -> None:
    """Text lines read "time level logger message"; lower levels are dropped."""
    stream = io.StringIO()
    configure_logging(LogSettings(level="warning", format="auto"), stream=stream)
    configure_logging(LogSettings(level="warning", format="text"), stream=stream)  # replaces
    logging.getLogger("staterelay.test").info("hidden")
    logging.getLogger("staterelay.access").info("GET / 200")
    logging.getLogger("staterelay.test").warning("shown")
    line = one_line(stream.getvalue())
    assert line.endswith(" WARNING staterelay.test shown")


def test_access_log_can_be_quieted(root_logger: logging.Logger) -> None:
    """log.access: false silences request lines but not other info lines."""
    stream = io.StringIO()
    configure_logging(LogSettings(access=False), stream=stream)
    logging.getLogger("staterelay.access").info("GET / 200")
    logging.getLogger("staterelay.test").info("kept")
    assert one_line(stream.getvalue()).endswith(" INFO staterelay.test kept")


# serve as a real process ---------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without any STATERELAY_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STATERELAY_")}


@dataclass
class Served:
    """A running ``python -m staterelay serve``."""

    proc: subprocess.Popen[str]
    port: int
    data_dir: Path

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and everything written to stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=5)
        return self.proc.returncode, stderr


def wait_ready(served: Served, timeout: float = 15.0) -> None:
    """Poll /readyz until it answers 200, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{served.port}/readyz"
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise AssertionError(f"serve exited early: {served.proc.communicate()[1]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"/readyz did not answer within {timeout} s")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``staterelay serve`` on a free port and a fresh data dir, ready."""
    port = free_port()
    data_dir = tmp_path / "data"
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )
    running = Served(proc, port, data_dir)
    try:
        wait_ready(running)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.slow
def test_serve_announces_once_and_exits_0_on_sigterm(served: Served) -> None:
    """One line names the public URL, the address and the data dir; SIGTERM exits 0."""
    code, stderr = served.stop()
    assert code == 0, stderr
    announced = [line for line in stderr.splitlines() if "StateRelay is serving" in line]
    assert len(announced) == 1, stderr
    # A fresh instance has no users: one more line gives the one-time setup link.
    setup = [line for line in stderr.splitlines() if "/setup?token=" in line]
    assert len(setup) == 1, stderr
    assert f"http://localhost:{served.port}/setup?token=" in setup[0]
    line = announced[0]
    assert f"StateRelay is serving http://localhost:{served.port} " in line
    assert f"listening on 127.0.0.1:{served.port}" in line
    assert str(served.data_dir) in line
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_serve_creates_a_private_secret_key(served: Served) -> None:
    """After start the instance secret exists, readable by its owner only."""
    key = served.data_dir / "secret.key"
    assert key.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(served.data_dir.stat().st_mode) == 0o700
    code, _ = served.stop()
    assert code == 0


@pytest.mark.slow
def test_serve_on_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Another listener on the port: one clear line, exit 1, and the data dir untouched."""
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
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
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd=ROOT,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"staterelay: cannot listen on 127.0.0.1:{port}: {os.strerror(98)}"
    )
    assert not data_dir.exists()


def test_bind_failure_after_the_check_is_still_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    """If the port is taken between the check and the bind, aiohttp's error is one line too."""
    monkeypatch.setattr(cli_module, "_check_can_listen", lambda host, port: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            env={"STATERELAY_LOG_LEVEL": "warning"},
        )
    assert result.exit_code == 1
    assert (
        one_line(result.stderr)
        == f"staterelay: cannot listen on 127.0.0.1:{port}: {os.strerror(98)}"
    )


def test_set_password_and_list_users(data_dir: Path) -> None:
    """A way back in from the shell: a new password, every session ended; `user list`."""
    empty = invoke("user", "list", "--data-dir", str(data_dir))
    assert (empty.exit_code, empty.stdout) == (0, "")
    assert "no users yet" in empty.stderr
    made = invoke(
        "user",
        "create",
        "--email",
        "sam@example.com",
        "--admin",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin="first long password\n",
    )
    assert made.exit_code == 0, made.output
    user_id = made.stdout.strip()
    listed = invoke("user", "list", "--data-dir", str(data_dir))
    (line,) = listed.stdout.splitlines()
    assert line.split("\t")[:3] == [user_id, "sam@example.com", "admin"]

    async def sign_in_twice(core: Core) -> None:
        user = await core.users.by_email("sam@example.com")
        for agent in ("phone", "laptop"):
            await core.sessions.create(user, ip="127.0.0.1", user_agent=agent)

    asyncio.run(with_core(data_dir, sign_in_twice))
    changed = invoke(
        "user",
        "set-password",
        "--email",
        "sam@example.com",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin="second long password\n",
    )
    assert changed.exit_code == 0, changed.output
    assert "set a new password for sam@example.com; 2 sessions signed out" in changed.stderr
    short = invoke(
        "user",
        "set-password",
        "--email",
        "sam@example.com",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin="short\n",
    )
    assert short.exit_code == 1
    assert "password must be 10 to 1024 characters" in short.stderr
    missing = invoke(
        "user",
        "set-password",
        "--email",
        "kim@example.com",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin="second long password\n",
    )
    assert missing.exit_code == 1
    assert "no user with the email kim@example.com" in missing.stderr


def test_ctrl_c_while_starting_exits_0_with_one_line(tmp_path: Path) -> None:
    """Interrupted while it waits for its database: exit 0, one log line, no traceback."""
    with socket.socket() as database:  # accepts the connection and never answers
        database.bind(("127.0.0.1", 0))
        database.listen()
        url = f"postgresql://app:pw@127.0.0.1:{database.getsockname()[1]}/staterelay"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "staterelay",
                "serve",
                "--port",
                str(free_port()),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            env={**os.environ, "STATERELAY_DATABASE_URL": url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # A test runner may start children with SIGINT ignored; a terminal does not.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        connection, _ = database.accept()  # the server is starting: it opens its database
        with connection:
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.endswith("StateRelay stopped before it finished starting")
