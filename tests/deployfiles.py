"""Readers for the deployment files the tests check: Dockerfile, .dockerignore, systemd units."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword, the text after it and its line number."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            words = text.split()
            while words and words[0].startswith("--"):
                words.pop(0)
            if not words or words[0] != "CMD":
                return None
            text = text[text.index("CMD") + 3 :].strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        assert all(isinstance(v, str) for v in value)
        return value

    def flags(self) -> dict[str, str]:
        """``--name=value`` flags at the start of the arguments (HEALTHCHECK, COPY)."""
        found: dict[str, str] = {}
        for word in self.args.split():
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            found[name] = value
        return found

    def words(self) -> list[str]:
        """The arguments split like a shell would, flags removed."""
        return [w for w in shlex.split(self.args) if not w.startswith("--")]


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: continuations joined, comments dropped."""
    instructions: list[Instruction] = []
    buffer = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1].rstrip() + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions split into build stages, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        assert result, "the Dockerfile must start with FROM"
        result[-1].append(instruction)
    return result


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The ``ENV key=value`` settings of a stage."""
    found: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                found[key] = value
    return found


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> every value given (in order)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::([?-])([^}]*))?\}")


def compose_variables(text: str) -> list[tuple[str, str | None]]:
    """Every ``${NAME...}`` a compose file uses: (name, "?" for required, "-" for a default)."""
    return [(m.group(1), m.group(2)) for m in _COMPOSE_VARIABLE.finditer(text) if m.group(1)]


def interpolate(text: str, values: dict[str, str]) -> str:
    """A compose file's text with ``${NAME}``, ``${NAME:?message}`` and ``${NAME:-default}``
    replaced as ``docker compose`` does (``$$`` is a literal ``$``)."""

    def replace(match: re.Match[str]) -> str:
        name, kind, default = match.group(1), match.group(2), match.group(3)
        if name is None:
            return "$"
        if values.get(name):
            return values[name]
        if kind == "-":
            return default
        raise AssertionError(f"compose would refuse to start: {name} is not set ({default})")

    return _COMPOSE_VARIABLE.sub(replace, text)
