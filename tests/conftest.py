"""Shared fixtures: real settings on a temp data dir, a real app on loopback, real credentials."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from staterelay.app.appkeys import CORE_KEY
from staterelay.app.factory import create_app
from staterelay.core import Core
from staterelay.settings import Settings, WebhookSettings, load_settings
from tests.processes import ServerProcess
from tests.secret_scan import SUITE_SCANNER, LogScan, suite_literals

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def scan_logs_for_secrets() -> Iterator[None]:
    """Scan every log record of the run, and servers' stderr, for secrets (see secret_scan)."""
    SUITE_SCANNER.add_literals(suite_literals())
    root = logging.getLogger()
    handler = LogScan(SUITE_SCANNER)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # secrets must stay out of debug lines too
    read_stderr = ServerProcess.stderr
    stop = ServerProcess.ensure_stopped

    def stderr(self: ServerProcess) -> str:
        text = read_stderr(self)
        SUITE_SCANNER.scan("stderr of staterelay serve", text)
        return text

    def ensure_stopped(self: ServerProcess) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None and not self.proc.stderr.closed:
            stderr(self)
        stop(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ServerProcess, "stderr", stderr)
        patch.setattr(ServerProcess, "ensure_stopped", ensure_stopped)
        yield
    root.removeHandler(handler)
    root.setLevel(level)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any log line or server stderr carried a secret."""
    findings = SUITE_SCANNER.findings
    if not findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(findings)} secret(s) found in logs:"]
    lines += [f"  {finding.describe()}" for finding in findings[:50]]
    if reporter is not None:
        reporter.write_sep("=", "secrets in logs", red=True)
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings on a fresh data directory; loopback webhook targets allowed for tests."""
    base = load_settings(data_dir=tmp_path / "data", environ={})
    return dataclasses.replace(
        base,
        webhooks=WebhookSettings(allow_private_networks=True, timeout_seconds=2.0),
    )


@pytest.fixture
def app(settings: Settings) -> web.Application:
    """The whole application, not yet started."""
    return create_app(settings)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Any], app: web.Application
) -> TestClient[web.Request, web.Application]:
    """A client of the app served on 127.0.0.1 (pytest-aiohttp closes it)."""
    test_client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    return test_client


@pytest.fixture
def core(app: web.Application, client: TestClient[web.Request, web.Application]) -> Core:
    """The running app's core."""
    return app[CORE_KEY]


@dataclasses.dataclass
class Account:
    """A user with an API key, for tests."""

    user_id: str
    tenant_id: str
    key: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for this account."""
        return {"Authorization": f"Bearer {self.key}"}


async def make_account(
    core: Core, email: str, *, scope: str = "write", new_tenant: bool = False
) -> Account:
    """Create a user (in the household, or in a tenant of its own) with an API key."""
    tenant_id = None
    if new_tenant:
        import time

        from staterelay.core.ids import new_id
        from staterelay.core.records import Tenant

        tenant = await core.store.create_tenant(
            Tenant(id=new_id("ten"), name=email, created_at=time.time())
        )
        tenant_id = tenant.id
    user = await core.users.create(email=email, tenant_id=tenant_id)
    _, secret = await core.auth.create_api_key(user, name="test", scope=scope)
    return Account(user_id=user.id, tenant_id=user.tenant_id, key=secret, email=email)


@pytest.fixture
async def account(core: Core) -> Account:
    """A household user with a write-scoped API key."""
    return await make_account(core, "alice@example.com")


@pytest.fixture
async def other_account(core: Core) -> Account:
    """A user of a different tenant."""
    return await make_account(core, "mallory@example.net", new_tenant=True)


async def link_oauth_client(
    core: Core, account: Account, *, client_id: str = "test-client"
) -> tuple[str, str]:
    """Link ``account``'s user to an OAuth client as a consent would; returns (grant id, token)."""
    from staterelay.core.oauth import NewCode

    if await core.oauth.get_client(client_id) is None:
        await core.oauth.create_client(
            client_id=client_id,
            name="Test client",
            redirect_uris=["https://client.example.com/callback"],
            token_endpoint_auth_method="client_secret_basic",
            scopes=["devices"],
        )
    code = core.oauth.new_code()
    await core.oauth.save_code(
        code,
        NewCode(
            client_id=client_id,
            tenant_id=account.tenant_id,
            user_id=account.user_id,
            redirect_uri="https://client.example.com/callback",
            redirect_uri_given=True,
            scopes=("devices",),
        ),
    )
    stored = await core.oauth.find_code(code)
    assert stored is not None
    tokens = core.oauth.issue_tokens(("devices",))
    assert await core.oauth.exchange_code(stored, tokens)
    principal = await core.auth.authenticate(tokens.access_token)
    return principal.credential_id, tokens.access_token
