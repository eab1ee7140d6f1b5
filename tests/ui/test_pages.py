"""Every main page: no inline script or style (CSP), light enough, wired to its assets."""

from __future__ import annotations

import re

import pytest

from tests.ui.homes import Browse, Home, MakeApp, sign_in_home

PAGE_BUDGET = 100_000  # bytes of HTML + CSS + JS, before images
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<[^>]*\sstyle\s*=", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
ASSETS = re.compile(r'(?:href|src)="(/static/[^"#]+\.(?:css|js))"')


@pytest.fixture
async def home(make_app: MakeApp, browse: Browse) -> Home:
    """A household with one device of each type and a little activity."""
    home = await sign_in_home(browse, make_app(), "sam@example.com")
    for kind in ("switch", "dimmer", "contact_sensor", "motion_sensor", "temperature_sensor"):
        device_id = await home.add_device(kind, kind.replace("_", " ").title())
    await home.add_device("button", "Doorbell")
    await home.post(f"/dashboard/devices/{device_id}/state", {"temperature": "21.5"})
    return home


async def main_pages(home: Home) -> list[str]:
    """The paths of every main page of this household."""
    (first, *_) = (await home.core.devices.list(home.principal)).items
    return [
        "/dashboard",
        "/dashboard/devices",
        "/dashboard/devices/new",
        f"/dashboard/devices/{first.id}",
        f"/dashboard/devices/{first.id}/delete",
        "/dashboard/activity",
        "/dashboard/integrations",
        "/dashboard/settings",
    ]


async def test_pages_have_no_inline_script_style_or_handlers(home: Home, browse: Browse) -> None:
    """The CSP forbids them; the markup does not depend on them."""
    visitor = await browse(home.browser.app)
    visits = [(home.browser, path) for path in await main_pages(home)]
    visits += [(visitor, "/"), (visitor, "/login")]
    for browser, path in visits:
        response = await browser.get(path)
        html = await response.text()
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert not INLINE_HANDLER.search(html), path
        assert not INLINE_STYLE.search(html), path
        assert not INLINE_SCRIPT.search(html), path


async def test_every_main_page_weighs_under_100_kb(home: Home) -> None:
    """HTML plus the stylesheet and script it loads."""
    sizes: dict[str, int] = {}
    for path in await main_pages(home):
        html = await home.browser.page(path)
        total = len(html.encode())
        for asset in sorted(set(ASSETS.findall(html))):
            response = await home.browser.get(asset)
            assert response.status == 200, asset
            total += len(await response.read())
        sizes[path] = total
    assert max(sizes.values()) < PAGE_BUDGET, sizes


async def test_static_assets_are_served_with_their_types(home: Home) -> None:
    """The script and the icon sprite ship in the package and come with nosniff."""
    for path, kind in (
        ("/static/app.js", "application/javascript"),
        ("/static/icons.svg", "image/svg+xml"),
    ):
        response = await home.browser.get(path)
        assert response.status == 200
        assert response.content_type in (kind, "text/javascript"), path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
