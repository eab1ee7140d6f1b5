"""Persistence: the ``Store`` interface and its engines."""

from __future__ import annotations

from pathlib import Path

from staterelay.store.base import Store


def open_store(url: str, *, durability: str = "full") -> Store:
    """The store for a database URL (``sqlite:///path`` or ``postgresql://...``); not yet opened."""
    if url.startswith("sqlite:///"):
        from staterelay.store.sqlite import SQLiteStore

        return SQLiteStore(Path(url.removeprefix("sqlite:///")), durability=durability)
    if url.startswith(("postgresql://", "postgres://")):
        raise ValueError("PostgreSQL support arrives with the hosted scale-out work")
    raise ValueError(f"unsupported database URL: {url.split(':', 1)[0]}")


__all__ = ["Store", "open_store"]
