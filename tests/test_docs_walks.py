"""The README's API walk runs as written against a real server, and docs/alexa.md counts the
same ten steps as the set-up guide the dashboard and ``alexa setup`` show."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from staterelay.core.records import Device, PropertyState
from staterelay.integrations.alexa.console import SetupPlan, setup_steps
from staterelay.settings import load_settings
from staterelay.ui.present import curl_snippet
from tests.processes import ServerProcess
from tests.skips import unavailable

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ALEXA_DOC = ROOT / "docs" / "alexa.md"


def api_walk_commands() -> list[str]:
    """The shell blocks of steps 1 to 3 of "The API in five minutes", in order."""
    text = README.read_text(encoding="utf-8")
    walk = text.split("## The API in five minutes", 1)[1].split("\n4. ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", walk, re.S)
    return [re.sub(r"^ {3}", "", block, flags=re.M) for block in blocks]


async def test_the_readme_api_walk_runs_as_written(tmp_path: Path) -> None:
    """The account line, the key, a device of its own in $DEV, a change: as printed."""
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install {tool})")
    data = tmp_path / "data"
    server = ServerProcess(data, env={"STATERELAY_DATA_DIR": str(data)})
    await server.start()
    try:
        account = re.search(r"`(printf .*? --password-stdin)`", README.read_text(encoding="utf-8"))
        assert account is not None
        script = "\n".join(
            ["set -euo pipefail", account.group(1), *api_walk_commands(), 'echo; echo "DEV=$DEV"']
        ).replace("http://localhost:8080", server.url)
        bin_dir = str(Path(sys.executable).parent)
        result = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={
                **os.environ,
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "STATERELAY_DATA_DIR": str(data),
            },
        )
    finally:
        server.terminate()
        server.ensure_stopped()
    assert result.returncode == 0, result.stderr
    device_id = result.stdout.strip().splitlines()[-1].removeprefix("DEV=")
    assert re.fullmatch(r"dev_[A-Za-z0-9_-]+", device_id), result.stdout
    assert '"brightness":40' in result.stdout.replace(" ", "")
    assert '"power":"ON"' in result.stdout.replace(" ", "")


def test_the_walk_uses_the_device_pages_names() -> None:
    """The key is $STATERELAY_KEY, as in the curl line every device page shows."""
    commands = "\n".join(api_walk_commands())
    settings = load_settings(environ={})
    lamp = Device(
        seq=1,
        id="dev_x",
        tenant_id="t",
        type="dimmer",
        name="Lamp",
        description="",
        options={},
        properties={"power": PropertyState("ON", 1.0)},
        version=1,
        created_at=1.0,
        updated_at=1.0,
    )
    assert "$STATERELAY_KEY" in curl_snippet(settings, lamp)
    assert "$STATERELAY_KEY" in commands
    assert "$KEY" not in commands.replace("$STATERELAY_KEY", "")
    assert "DEV=$(" in commands
    assert "| jq -r .id)" in commands
    assert '"name": "Movie mode"' not in commands  # the ten-minute walk made that one


def test_docs_alexa_counts_the_guides_ten_steps() -> None:
    """At most ten counted steps, with the titles the dashboard's guide shows, in order."""
    text = ALEXA_DOC.read_text(encoding="utf-8")
    counted = re.findall(r"^\*\*(\d+)\. ", text, re.M)
    assert counted == [str(n) for n in range(1, 11)]
    steps = setup_steps(load_settings(environ={}), SetupPlan(clients=(), relay_secret="x"))
    assert len(steps) == len(counted)
    assert "| **StateRelay, your own skill** | **10** |" in text
