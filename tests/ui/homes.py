"""Households for dashboard tests: a person signed in, their CSRF token, devices made by form."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientResponse, web

from staterelay.core import Core
from staterelay.core.ids import new_id
from staterelay.core.records import Principal, Tenant, User
from tests.web.support import PASSWORD, Browser, csrf_in

Browse = Callable[[web.Application], Awaitable[Browser]]
MakeApp = Callable[..., web.Application]

_DEVICE_LOCATION = re.compile(r"^/dashboard/devices/(dev_[A-Za-z0-9_-]+)\?done=created$")


@dataclasses.dataclass
class Home:
    """A signed-in person of one household (tenant)."""

    browser: Browser
    user: User
    csrf: str

    @property
    def core(self) -> Core:
        """The app's core."""
        return self.browser.core

    @property
    def principal(self) -> Principal:
        """The person as core sees them (for arranging state)."""
        return Principal(
            tenant_id=self.user.tenant_id,
            user_id=self.user.id,
            scopes=frozenset({"read", "write"}),
            credential="session",
            credential_id="test",
        )

    async def post(
        self, path: str, fields: dict[str, str] | None = None, **kwargs: Any
    ) -> ClientResponse:
        """POST a form with this session's CSRF token, without following redirects."""
        data = {**(fields or {}), "csrf_token": self.csrf}
        return await self.browser.client.post(path, data=data, allow_redirects=False, **kwargs)

    async def add_device(self, type: str, name: str, **fields: str) -> str:
        """Create a device through the new-device form; returns its id."""
        response = await self.post("/dashboard/devices/new", {"type": type, "name": name, **fields})
        assert response.status == 303, await response.text()
        match = _DEVICE_LOCATION.match(response.headers["Location"])
        assert match is not None, response.headers["Location"]
        return match.group(1)


async def sign_in_home(
    browse: Browse,
    app: web.Application,
    email: str,
    *,
    own_tenant: bool = False,
    is_admin: bool = True,
) -> Home:
    """A new person (in the household, or in a tenant of their own) signed in on a browser."""
    browser = await browse(app)
    core = browser.core
    tenant_id = None
    if own_tenant:
        tenant = await core.store.create_tenant(
            Tenant(id=new_id("ten"), name=email, created_at=time.time())
        )
        tenant_id = tenant.id
    user = await core.users.create(
        email=email, password=PASSWORD, is_admin=is_admin, tenant_id=tenant_id
    )
    await browser.login(email)
    csrf = csrf_in(await browser.page("/dashboard"))
    return Home(browser=browser, user=user, csrf=csrf)
