"""Skipping a test whose outside requirement is missing, except on CI, where it fails.

CI (``CI=true``) provides every server, binary and file the suite needs, so there a
missing one is an error, not a reason to skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str, *, module_level: bool = False) -> NoReturn:
    """Skip with ``reason`` (the whole module when ``module_level``); fail when CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run here)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)
