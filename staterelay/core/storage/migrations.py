"""Numbered SQL migrations: the store's bundled ones and the folders integrations ship.

A folder of migrations holds one subfolder per dialect (``sqlite/``, ``postgres/``) of
``<version>_<name>.sql`` files. Every store applies the bundled migrations and those of the
folders it was given together, in version order, and records each version once in
``schema_migrations``; so versions must be unique across all of them (the bundled ones use
1-999), and a repeated version stops the store from opening.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.resources.abc import Traversable
from typing import Literal

Dialect = Literal["sqlite", "postgres"]
Migration = tuple[int, str, str]
"""(version, file name, SQL)."""


def read_folder(folder: Traversable, dialect: Dialect) -> list[Migration]:
    """The migrations of ``folder`` for ``dialect``, in version order (none without the
    dialect's subfolder)."""
    sub = folder.joinpath(dialect)
    if not sub.is_dir():
        return []
    found: list[Migration] = []
    for entry in sub.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        version, _, _ = name.partition("_")
        if not version.isdigit():
            raise ValueError(f"migration {name} in {folder} does not start with its version")
        found.append((int(version), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def merged(
    bundled: Iterable[Migration], folders: Sequence[Traversable], dialect: Dialect
) -> list[Migration]:
    """The bundled migrations and those of ``folders``, by version; a repeated version is a
    ``ValueError`` naming both files."""
    by_version: dict[int, Migration] = {}
    for migration in [*bundled, *(m for folder in folders for m in read_folder(folder, dialect))]:
        version, name, _ = migration
        other = by_version.get(version)
        if other is not None:
            raise ValueError(
                f"migrations {other[1]} and {name} share version {version}: an integration's"
                " migrations need versions of their own"
            )
        by_version[version] = migration
    return [by_version[version] for version in sorted(by_version)]
