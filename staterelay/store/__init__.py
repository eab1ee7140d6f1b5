"""Persistence: the ``Store`` interface and its engines."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path

from staterelay.core.storage import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(
    url: str,
    *,
    durability: str = "full",
    migrate_url: str | None = None,
    migrations: Sequence[Traversable] = (),
) -> Store:
    """The store for a database URL (``sqlite:///path`` or ``postgresql://...``); not yet opened.

    ``migrate_url`` (PostgreSQL only) connects as the owner of the tables to apply
    migrations and grant the role of ``url`` its privileges; without it the role of ``url``
    must be able to migrate itself, or the schema must be up to date already.
    ``migrations`` are integrations' folders of migrations, applied with the bundled ones
    (see ``staterelay.core.storage.migrations``).
    """
    if url.startswith("sqlite:///"):
        from staterelay.store.sqlite.store import SQLiteStore

        return SQLiteStore(
            Path(url.removeprefix("sqlite:///")), durability=durability, migrations=migrations
        )
    if url.startswith(POSTGRES_SCHEMES):
        try:
            from staterelay.store.postgres.store import PostgresStore
        except ImportError as exc:  # asyncpg is the optional `postgres` extra
            raise ValueError(
                f"PostgreSQL needs asyncpg ({exc}): pip install 'staterelay[postgres]'"
            ) from None
        return PostgresStore(url, migrate_url=migrate_url, migrations=migrations)
    raise ValueError(f"unsupported database URL: {url.split(':', 1)[0]}")


async def migrate_database(
    url: str, *, app_role: str | None = None, migrations: Sequence[Traversable] = ()
) -> list[int]:
    """Apply pending migrations (bundled and of ``migrations``) as the role of ``url`` and
    grant ``app_role`` (PostgreSQL).

    For SQLite, opening the store migrates it; ``app_role`` does not apply.
    """
    if url.startswith(POSTGRES_SCHEMES):
        from staterelay.store.postgres.engine import migrate_url

        return await migrate_url(url, app_role=app_role, folders=migrations)
    store = open_store(url, migrations=migrations)
    await store.open()
    await store.close()
    return []


__all__ = ["Store", "migrate_database", "open_store"]
