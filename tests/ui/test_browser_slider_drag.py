"""The brightness slider dragged with the mouse in a real browser, with the live feed up:
every step is sent in order, the live echoes of earlier steps never pull the thumb back,
and where the thumb is let go is what StateRelay stores (issue 14, "Controls that never
drop input")."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import pytest

from tests.conftest import make_account
from tests.ui.test_browser import (  # noqa: F401 - the browser and instance fixtures
    Browser,
    Instance,
    browser,
    instance,
    live,
    playwright_api,
    set_up,
)

expect = playwright_api.expect

START = 20
TARGET = 80
MOVES = 15
THUMB = 16

# Samples the slider's value on every animation frame (and on every input event) until
# stopped, so a reset between two of the test's own reads is seen too.
SAMPLER = """(id) => {
  const range = document.getElementById(id);
  const samples = [];
  window.__sliderSamples = samples;
  window.__sliderSampling = true;
  const take = () => samples.push(Number(range.value));
  range.addEventListener("input", take);
  const frame = () => {
    if (!window.__sliderSampling) return;
    take();
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}"""


async def api_get(server: Instance, key: str, path: str) -> Any:
    """A GET of the REST API with the key; its JSON."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def thumb_x(slider: Any, value: int) -> tuple[float, float]:
    """Where the centre of the thumb of ``slider`` sits at ``value``, in page coordinates
    (Chromium's thumb is 16 px wide and travels the track less its width)."""
    box = await slider.bounding_box()
    assert box is not None
    usable = box["width"] - THUMB
    return box["x"] + THUMB / 2 + usable * value / 100, box["y"] + box["height"] / 2


async def test_a_dragged_slider_sends_every_step_in_order_and_keeps_its_place(
    instance: Instance,  # noqa: F811 - the fixture imported above
    browser: Browser,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """20 dragged to about 80 in fifteen moves with the live feed up: the thumb only moves
    right while the echoes arrive, the values sent (the device's activity) rise strictly
    from 20 to where it was let go, and the API stores what the slider shows."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await set_up(page, instance, caplog)
    core = instance.core
    me = await instance.principal()
    lamp = await core.devices.create(me, type="dimmer", name="Desk lamp", source="ui")
    await core.devices.set_state(me, lamp.id, {"power": "ON", "brightness": START}, source="api")
    key = (await make_account(core, "script@example.com", scope="read")).key
    before = await core.devices.get(me, lamp.id)
    await page.reload()
    await live(page)

    slider = page.locator(f"#brightness-{lamp.id}")
    card = page.locator(f'[data-device="{lamp.id}"]')
    await expect(slider).to_have_value(str(START))
    await slider.scroll_into_view_if_needed()
    await page.evaluate(SAMPLER, f"brightness-{lamp.id}")

    x0, y = await thumb_x(slider, START)
    x1, _ = await thumb_x(slider, TARGET)
    await page.mouse.move(x0, y)
    await page.mouse.down()
    assert int(await slider.input_value()) == START  # pressed on the thumb: no jump
    seen: list[int] = []
    for step in range(1, MOVES + 1):
        await page.mouse.move(x0 + (x1 - x0) * step / MOVES, y, steps=2)
        await asyncio.sleep(0.06)  # time for answers and live echoes of earlier steps
        seen.append(int(await slider.input_value()))
    # Hold still a moment with the button down: the echoes of the last steps arrive.
    await asyncio.sleep(0.3)
    seen.append(int(await slider.input_value()))
    await page.evaluate("() => { window.__sliderSampling = false; }")
    samples: list[int] = await page.evaluate("() => window.__sliderSamples")
    await page.mouse.up()

    final = seen[-1]
    assert abs(final - TARGET) <= 2, seen
    assert seen == sorted(seen), f"the thumb moved back during the drag: {seen}"
    assert samples, "no samples were taken"
    dips = [(a, b) for a, b in itertools.pairwise(samples) if b < a]
    assert not dips, f"a live echo pulled the thumb back: {dips} in {samples}"
    assert samples[0] == START
    assert samples[-1] == final

    # Let go: the state line, the slider and the server all settle on where it was let go.
    state_line = card.locator('[data-field="state"]')
    await expect(state_line).to_have_text(f"On · {final} %", timeout=15000)
    await expect(slider).to_have_value(str(final))
    await expect(card.locator("output")).to_have_text(f"{final} %")
    stored = await api_get(instance, key, f"/devices/{lamp.id}")
    assert stored["state"]["brightness"] == final == int(await slider.input_value())

    # What was sent, oldest first: strictly rising from the start to the end, none outside.
    entries: list[dict[str, Any]] = []
    path = f"/devices/{lamp.id}/activity?limit=100"
    while True:
        listed = await api_get(instance, key, path)
        entries += listed["items"]
        if not listed.get("next_cursor"):
            break
        path = f"/devices/{lamp.id}/activity?limit=100&cursor={listed['next_cursor']}"
    sent = [
        entry["new_value"]
        for entry in reversed(entries)
        if entry["property"] == "brightness" and entry["source"] == "ui"
    ]
    assert sent, entries
    assert sent[-1] == final, sent
    assert all(START < value <= final for value in sent), sent
    assert all(a < b for a, b in itertools.pairwise(sent)), f"out of order: {sent}"
    assert len(sent) >= 3, f"the drag's intermediate steps were not sent: {sent}"
    after = await core.devices.get(me, lamp.id)
    assert after.version == before.version + len(sent), (before.version, after.version, sent)
    assert errors == []
