"""``staterelay client``: create (alexa, ifttt, custom presets), list and delete."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from staterelay.cli import cli
from staterelay.core import Core, CoreConfig, InProcessBus
from staterelay.core.crypto import load_or_create_secret
from staterelay.store import open_store


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


def invoke(data_dir: Path, *args: str) -> Result:
    """Run ``staterelay client ...`` in-process."""
    return CliRunner().invoke(cli, ["client", *args, "--data-dir", str(data_dir)])


def field(output: str, label: str) -> str:
    """The value printed after ``label:``."""
    match = re.search(rf"^\s*{re.escape(label)}:\s+(.+)$", output, re.MULTILINE)
    assert match, f"{label} not in output:\n{output}"
    return match.group(1).strip()


def check_secret(data_dir: Path, client_id: str, secret: str) -> bool:
    """Whether the stored client accepts ``secret`` (through core, as the server would)."""

    async def run() -> bool:
        store = open_store(f"sqlite:///{data_dir / 'staterelay.db'}")
        core = Core(
            store,
            InProcessBus(),
            instance_secret=load_or_create_secret(data_dir / "secret.key"),
            config=CoreConfig(),
        )
        await store.open()
        try:
            client = await core.oauth.get_client(client_id)
            assert client is not None
            return core.oauth.check_secret(client, secret)
        finally:
            await core.bus.close()
            await store.close()

    return asyncio.run(run())


def test_alexa_preset_prints_the_account_linking_values(data_dir: Path) -> None:
    args = ("create", "--preset", "alexa", "--vendor-id", "M2ABCDEF")
    refused = invoke(data_dir, *args)
    assert refused.exit_code == 2
    assert "it points at this machine (localhost)" in refused.stderr
    assert invoke(data_dir, "list").stdout == ""
    result = invoke(data_dir, *args, "--allow-insecure-url")
    assert result.exit_code == 0, result.output
    out = result.stdout
    client_id = field(out, "Client ID")
    secret = field(out, "Client secret")
    assert client_id.startswith("alexa-")
    assert field(out, "Authorization URI") == "http://localhost:8080/oauth/authorize"
    assert field(out, "Access token URI") == "http://localhost:8080/oauth/token"
    assert field(out, "Authentication scheme").startswith("HTTP Basic")
    assert field(out, "Scope") == "devices"
    for uri in (
        "https://pitangui.amazon.com/api/skill/link/M2ABCDEF",
        "https://layla.amazon.com/api/skill/link/M2ABCDEF",
        "https://alexa.amazon.co.jp/api/skill/link/M2ABCDEF",
    ):
        assert f"    {uri}\n" in out
    assert "shown only this once" in out
    assert secret.encode() not in (data_dir / "staterelay.db").read_bytes()
    assert check_secret(data_dir, client_id, secret)
    assert not check_secret(data_dir, client_id, secret + "x")


def test_ifttt_preset_uses_body_credentials(data_dir: Path) -> None:
    args = ("create", "--preset", "ifttt", "--service-id", "my_relay", "--id", "ifttt-1")
    refused = invoke(data_dir, *args)
    assert refused.exit_code == 2
    assert "--allow-insecure-url" in refused.stderr
    result = invoke(data_dir, *args, "--allow-insecure-url")
    assert result.exit_code == 0, result.output
    assert field(result.stdout, "Client ID") == "ifttt-1"
    assert field(result.stdout, "Authentication scheme") == "credentials in the request body"
    assert field(result.stdout, "Scope") == "ifttt"
    assert "    https://ifttt.com/channels/my_relay/authorize\n" in result.stdout
    listed = invoke(data_dir, "list")
    assert listed.exit_code == 0
    assert listed.stdout.split("\t")[:5] == [
        "ifttt-1",
        "IFTTT",
        "client_secret_post",
        "ifttt",
        "cli",
    ]


def test_custom_preset_takes_redirect_uris_and_auth_method(data_dir: Path) -> None:
    result = invoke(
        data_dir,
        "create",
        "--preset",
        "custom",
        "--redirect-uri",
        "https://app.example.com/cb",
        "--redirect-uri",
        "http://localhost:3000/cb",
        "--auth-method",
        "client_secret_post",
        "--name",
        "Home Assistant",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "'Home Assistant'" in out
    assert "    https://app.example.com/cb\n    http://localhost:3000/cb\n" in out
    assert field(out, "Authentication scheme") == "credentials in the request body"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "alexa"], "--preset alexa needs --vendor-id"),
        (["--preset", "ifttt"], "--preset ifttt needs --service-id"),
        (["--preset", "custom"], "--preset custom needs at least one --redirect-uri"),
    ],
)
def test_presets_need_their_ids(data_dir: Path, args: list[str], message: str) -> None:
    result = invoke(data_dir, "create", *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "custom", "--redirect-uri", "http://example.com/cb"], "must use https"),
        (["--preset", "alexa", "--vendor-id", "no/slash"], "vendor id"),
    ],
)
def test_bad_values_fail_with_one_line(data_dir: Path, args: list[str], message: str) -> None:
    result = invoke(data_dir, "create", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("staterelay: ")
    assert message in result.stderr


def test_duplicate_id_and_delete(data_dir: Path) -> None:
    args = ["create", "--preset", "ifttt", "--service-id", "relay", "--id", "ifttt-1"]
    args.append("--allow-insecure-url")
    assert invoke(data_dir, *args).exit_code == 0
    again = invoke(data_dir, *args)
    assert again.exit_code == 1
    assert "exists" in again.stderr
    deleted = invoke(data_dir, "delete", "ifttt-1")
    assert deleted.exit_code == 0, deleted.output
    empty = invoke(data_dir, "list")
    assert empty.stdout == ""
    assert "no OAuth clients yet" in empty.stderr
    missing = invoke(data_dir, "delete", "ifttt-1")
    assert missing.exit_code == 1
    assert "no such OAuth client" in missing.stderr
