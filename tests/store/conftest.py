"""Store fixtures, parametrized over every backend the contract suite covers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.store import Store, open_store
from tests.postgres_support import fresh_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, migrated, empty store of each backend.

    PostgreSQL: a fresh database, migrated by its owner; the store connects as the app
    role, which owns nothing and is bound by row-level security.
    """
    backend = request.param
    if backend == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'contract.db'}")
        await opened.open()
        try:
            yield opened
        finally:
            await opened.close()
    elif backend == "postgres":
        async with fresh_database() as database:
            opened = open_store(database.app_url, migrate_url=database.owner_url)
            await opened.open()
            try:
                yield opened
            finally:
                await opened.close()
    else:  # pragma: no cover - other engines register here
        raise AssertionError(backend)
