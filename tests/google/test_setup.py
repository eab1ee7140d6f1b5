"""Set-up and status: ``staterelay google setup`` (idempotent), the guided page, the card,
``GET /api/v1/integrations/google`` and ``staterelay doctor``'s checks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from staterelay.cli import cli
from staterelay.core import Core
from staterelay.integrations.google.checks import doctor_checks
from staterelay.settings import GoogleSettings, Settings, load_settings
from tests.google.conftest import (
    PROJECT,
    REPORT,
    FakeGoogle,
    intent,
    key_file,
    request,
    settle,
    synced,
)
from tests.oauth.conftest import Client, sign_in


def setup(data_dir: Path, *extra: str) -> Any:
    """Run ``staterelay google setup``."""
    return CliRunner().invoke(cli, ["google", "setup", "--data-dir", str(data_dir), *extra])


def test_setup_registers_once_and_prints_every_value(tmp_path: Path) -> None:
    """First run: a client with Google's two redirect URIs and its secret; second run: the
    same client, no new secret."""
    data_dir = tmp_path / "data"
    first = setup(data_dir, "--project-id", PROJECT)
    assert first.exit_code == 0, first.output
    out = first.output
    for value in (
        "/google/fulfillment",
        "/oauth/authorize",
        "/oauth/token",
        "Scope:",
        "devices",
        "Client ID:",
        "Client secret:",
        "srs_",
        "HomeGraph API",
    ):
        assert value in out, value
    client_id = re.search(r"Client ID:\s+(\S+)", out)
    assert client_id is not None
    second = setup(data_dir, "--project-id", PROJECT)
    assert second.exit_code == 0, second.output
    assert "srs_" not in second.output
    assert client_id.group(1) in second.output
    assert "not shown again" in second.output
    listed = CliRunner().invoke(cli, ["client", "list", "--data-dir", str(data_dir)])
    assert listed.output.count("google-home-") == 1
    assert f"oauth-redirect.googleusercontent.com/r/{PROJECT}" in listed.output


def test_setup_needs_a_valid_project_id(tmp_path: Path) -> None:
    """No project id, or one Google would not make: a one-line error, nothing registered."""
    data_dir = tmp_path / "data"
    result = setup(data_dir)
    assert result.exit_code == 1
    assert "--project-id" in result.output
    bad = setup(data_dir, "--project-id", "Not A Project")
    assert bad.exit_code == 1
    assert "project id" in bad.output


def test_doctor_checks_the_project_and_the_key(
    tmp_path: Path, private_key: rsa.RSAPrivateKey
) -> None:
    """Unused: no lines. Then the project id, a missing key, a broken one, a good one."""
    base = load_settings(data_dir=tmp_path, environ={})
    assert doctor_checks(base) == ()

    def with_google(**values: Any) -> Settings:
        import dataclasses

        return dataclasses.replace(base, google=GoogleSettings(**values))

    [project, key] = doctor_checks(with_google(project_id=PROJECT))
    assert project.status == "OK"
    assert key.status == "WARN"
    [project, key] = doctor_checks(with_google(service_account_file="missing.json"))
    assert project.status == "FAIL"
    assert key.status == "FAIL"
    assert "cannot read" in key.message
    (tmp_path / "broken.json").write_text("{}", encoding="utf-8")
    [_, key] = doctor_checks(with_google(project_id=PROJECT, service_account_file="broken.json"))
    assert key.status == "FAIL"
    key_file(tmp_path / "key.json", private_key, "https://oauth2.googleapis.com/token")
    [_, key] = doctor_checks(with_google(project_id=PROJECT, service_account_file="key.json"))
    assert key.status == "OK"
    [_, key] = doctor_checks(
        with_google(project_id="another-project", service_account_file="key.json")
    )
    assert key.status == "FAIL"
    assert "not another-project" in key.message


async def test_status_api_card_and_guide_follow_the_link(
    browser: Client, core: Core, token: str, google: FakeGoogle
) -> None:
    """Before SYNC, after SYNC and a report, after DISCONNECT: the API, the card and the
    guide's checks say so; other households' keys see only their own."""
    from tests.conftest import make_account

    principal = await core.auth.authenticate(token)
    me = await core.users.get(principal.tenant_id, principal.user_id)
    _, key = await core.auth.create_api_key(me, name="k", scope="read")
    headers = {"Authorization": f"Bearer {key}"}

    async def status() -> dict[str, Any]:
        answer = await browser.get("/api/v1/integrations/google", headers=headers)
        assert answer.status == 200, await answer.text()
        body: dict[str, Any] = await answer.json()
        return body

    before = await status()
    assert before["linked"] is False
    assert before["agent_user_id"] == principal.user_id
    assert before["report_state_configured"] is True
    await synced(browser, token)
    lamp = await core.devices.create(principal, type="switch", name="Lamp", source="api")
    await core.devices.set_state(principal, lamp.id, {"power": "ON"}, source="api")
    await google.wait(REPORT, 1)
    await settle(core)
    linked = await status()
    assert linked["linked"] is True
    assert linked["last_sync_intent_at"] is not None
    assert linked["last_report_state"]["status_code"] == 200
    assert linked["last_report_state"]["error"] is None
    assert linked["last_request_sync"]["status_code"] == 200

    await sign_in(browser, next_path="/dashboard/integrations")
    page = await (await browser.get("/dashboard/integrations")).text()
    assert 'id="google"' in page
    card = page.split('id="google"')[1].split("</section>")[0]
    assert 'data-state="linked"' in card
    assert "Last Report State" in card
    guide = await (await browser.get("/dashboard/integrations/google")).text()
    assert "/google/fulfillment" in guide
    assert "Google has fetched your devices" in guide
    assert "Google accepted a Report State" in guide

    stranger = await make_account(core, "mallory@example.net", new_tenant=True)
    theirs = await browser.get(
        "/api/v1/integrations/google", headers={"Authorization": f"Bearer {stranger.key}"}
    )
    assert (await theirs.json())["linked"] is False
    missing = await browser.get("/api/v1/integrations/google")
    assert missing.status == 401
    assert missing.content_type == "application/problem+json"

    _, answer = await intent(browser, token, request("DISCONNECT"))
    assert answer == {}
    after = await status()
    assert after["linked"] is False
    assert "DISCONNECT" in after["unlinked_reason"]
    assert json.dumps(after)


def test_the_doc_counts_the_same_steps_as_the_guide(tmp_path: Path) -> None:
    """docs/google.md's numbered steps are the guide's, in order, and at most ten."""
    from staterelay.integrations.google.console import GoogleProgress, setup_steps

    doc = (Path(__file__).resolve().parents[2] / "docs" / "google.md").read_text(encoding="utf-8")
    titles = re.findall(r"^\*\*(\d+)\. (.+?)\.\*\*", doc, re.M)
    settings = load_settings(data_dir=tmp_path, environ={})
    steps = setup_steps(settings, [], GoogleProgress())
    assert [title for _, title in titles] == [step.title for step in steps]
    assert [int(number) for number, _ in titles] == list(range(1, len(steps) + 1))
    assert len(steps) <= 10
