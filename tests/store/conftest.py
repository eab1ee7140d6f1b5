"""Store fixtures, parametrized over every backend the contract suite covers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from staterelay.store import Store, open_store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, migrated, empty store of each backend."""
    backend = request.param
    if backend == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'contract.db'}")
    else:  # pragma: no cover - other engines register here
        raise AssertionError(backend)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
