"""docs/ifttt.md names every trigger, field, ingredient and action; IFTTT settings are checked."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from staterelay.core.ifttt_catalog import ACTIONS, TRIGGERS, TriggerFields
from staterelay.core.records.ifttt import IftttEvent, Threshold
from staterelay.settings import SettingsError, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ifttt.md"


def sample_event() -> IftttEvent:
    """Any event; only the ingredient names matter here."""
    return IftttEvent(
        id=1,
        uid="u",
        tenant_id="t",
        device_id="d",
        device_name="n",
        kind="power",
        variant="",
        property="power",
        old_value="OFF",
        new_value="ON",
        cause=None,
        source=None,
        occurred_at=0.0,
    )


@pytest.mark.parametrize("slug", sorted(TRIGGERS))
def test_docs_describe_each_trigger_with_its_fields_and_ingredients(slug: str) -> None:
    """The platform must be set up with these exact slugs, so the docs list them all."""
    text = DOCS.read_text(encoding="utf-8")
    spec = TRIGGERS[slug]
    row = next(line for line in text.splitlines() if line.startswith(f"| `{slug}` |"))
    for field in spec.fields:
        assert f"`{field}`" in row, field
    fields = TriggerFields("d", Threshold("above", 1.0))
    for ingredient in spec.render(sample_event(), fields, UTC):
        assert f"`{ingredient}`" in row, ingredient


@pytest.mark.parametrize("slug", sorted(ACTIONS))
def test_docs_describe_each_action_with_its_fields(slug: str) -> None:
    """Every action and field appears in the actions table."""
    text = DOCS.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith(f"| `{slug}` |"))
    for field in ACTIONS[slug].fields:
        assert f"`{field}`" in row, field


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("STATERELAY_IFTTT_EVENT_RETENTION_DAYS", "29", "at least 30"),
        ("STATERELAY_IFTTT_REALTIME_DEBOUNCE_SECONDS", "1.5", "from 0 to 1"),
        ("STATERELAY_IFTTT_REALTIME_DEBOUNCE_SECONDS", "-0.1", "from 0 to 1"),
        ("STATERELAY_IFTTT_REALTIME_URL", "ftp://x", "http"),
    ],
)
def test_ifttt_settings_are_checked(tmp_path: Path, key: str, value: str, message: str) -> None:
    """Retention below 30 days, a debounce outside 0-1 s and odd URLs are refused."""
    with pytest.raises(SettingsError, match=message):
        load_settings(data_dir=tmp_path, environ={key: value})


def test_ifttt_settings_defaults(tmp_path: Path) -> None:
    """Off until a service key is set; one-second windows; 30 days of events."""
    ifttt = load_settings(data_dir=tmp_path, environ={}).ifttt
    assert ifttt.service_key is None
    assert ifttt.realtime_debounce_seconds == 1.0
    assert ifttt.event_retention_days == 30
    assert ifttt.client_id is None
