"""config.example.yaml and docs/configuration.md document exactly the keys the settings declare."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from staterelay.cli import config_template
from staterelay.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.yaml"
TEMPLATE = ROOT / "staterelay" / "config_template.yaml"
DOCS = ROOT / "docs" / "configuration.md"


def declared_keys(cls: type[Any] = Settings, prefix: str = "") -> set[str]:
    """Every leaf key of the settings dataclasses, dotted: server.hosts.api."""
    hints = get_type_hints(cls)
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            keys |= declared_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.add(f"{prefix}{f.name}")
    return keys


def example_keys(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    """Every leaf key of a parsed YAML mapping, dotted."""
    keys: set[str] = set()
    for name, value in mapping.items():
        if isinstance(value, dict):
            keys |= example_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def env_name(key: str) -> str:
    """The environment variable that sets a dotted key."""
    return "STATERELAY_" + key.replace(".", "_").upper()


def docs_section(text: str, section: str) -> str:
    """The part of the docs under the heading of one settings section."""
    match = re.search(rf"^### `{section}`\n(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/configuration.md has no '### `{section}`' heading"
    return match.group(1)


def test_example_documents_exactly_the_declared_keys() -> None:
    """A key added to a dataclass must be added to the example, and the other way round."""
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert example_keys(example) == declared_keys()


def test_example_loads_to_the_defaults(tmp_path: Path) -> None:
    """The example shows each default, so using it as the config file changes nothing."""
    loaded = load_settings(EXAMPLE, data_dir=tmp_path, environ={})
    assert loaded == load_settings(data_dir=tmp_path, environ={})
    assert loaded == Settings(data_dir=tmp_path)


def test_example_is_what_init_writes() -> None:
    """The repository's example and the packaged template are the same text."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert TEMPLATE.read_text(encoding="utf-8") == text
    assert config_template() == text


def test_every_key_in_the_example_has_a_comment_with_its_default() -> None:
    """Each key line follows a comment; each leaf's comment states the default."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^\s*([a-z_]+):(.*)$", line)
        if match is None:
            continue
        comment: list[str] = []
        for above in reversed(lines[:number]):
            if not above.strip().startswith("#"):
                break
            comment.insert(0, above)
        assert comment, f"config.example.yaml line {number + 1}: {match.group(1)} has no comment"
        if match.group(2).strip():  # a value, not a nested section
            assert "default" in " ".join(comment).lower(), (
                f"config.example.yaml line {number + 1}: {match.group(1)} has no default"
            )


def test_example_explains_environment_overrides() -> None:
    """The header shows how to override a key from the environment."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "STATERELAY_<SECTION>_<KEY>" in text
    assert "STATERELAY_SERVER_PORT=9000" in text


@pytest.mark.parametrize("key", sorted(declared_keys() - {"data_dir"}))
def test_docs_describe_every_key(key: str) -> None:
    """Each key appears, in backticks, in its section's table, with its environment name."""
    text = DOCS.read_text(encoding="utf-8")
    section, _, name = key.partition(".")
    assert f"`{name}`" in docs_section(text, section)
    assert f"`{env_name(key)}`" in text


def test_docs_describe_data_dir_and_precedence() -> None:
    """The data directory, the config file lookup and the precedence are explained."""
    text = DOCS.read_text(encoding="utf-8")
    for phrase in (
        "`data_dir`",
        "STATERELAY_DATA_DIR",
        "STATERELAY_CONFIG",
        "--config",
        "--data-dir",
        "## Durability",
        "## One host or split hosts",
    ):
        assert phrase in text
