"""The image's constraints file: every runtime dependency pinned to the version tested here.

``python -m tests.constraints > constraints.txt`` writes it from the environment the tests
ran in (pip freeze, narrowed to what ``staterelay[postgres,redis]`` needs at run time: no
test tools, not the project itself). tests/test_service_files.py checks the file covers
every runtime dependency and that the Dockerfile installs with it.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "staterelay"
IMAGE_EXTRAS = ("postgres", "redis")  # what the hosted image is built with (EXTRAS)


def runtime_requirements(
    project: str = PROJECT, extras: tuple[str, ...] = IMAGE_EXTRAS
) -> dict[str, list[Requirement]]:
    """Every distribution the project needs at run time (with ``extras``), by canonical name,
    with the requirements that name it."""
    needed: dict[str, list[Requirement]] = {}
    queue: list[tuple[str, tuple[str, ...]]] = [(project, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while queue:
        name, wanted = queue.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker is not None and not any(
                requirement.marker.evaluate(env) for env in environments
            ):
                continue
            key = canonicalize_name(requirement.name)
            needed.setdefault(key, []).append(requirement)
            queue.append((requirement.name, tuple(sorted(requirement.extras))))
    return needed


def frozen() -> dict[str, str]:
    """``pip freeze`` of this environment: canonical name -> pinned line."""
    output = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines: dict[str, str] = {}
    for line in output.splitlines():
        if "==" in line:
            lines[canonicalize_name(line.split("==", 1)[0])] = line.strip()
    return lines


def constraints_text() -> str:
    """The constraints file for this environment."""
    pins = frozen()
    needed = sorted(runtime_requirements())
    body = "\n".join(pins[name] for name in needed)
    return (
        "# Runtime dependencies of staterelay[postgres,redis], pinned to the versions the test\n"
        "# suite passed with (the Dockerfile installs with -c constraints.txt). Regenerate\n"
        "# after changing dependencies, from a venv where the tests pass:\n"
        "#   python -m tests.constraints > constraints.txt\n"
        f"{body}\n"
    )


if __name__ == "__main__":
    sys.stdout.write(constraints_text())
