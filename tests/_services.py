"""Skip a test whose outside dependency is missing, except where it is required (CI)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str, fix: str) -> NoReturn:
    """Skip, saying ``message`` and ``fix``; fail instead under HEADRACE_REQUIRE_SERVICES=1."""
    if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; HEADRACE_REQUIRE_SERVICES=1 demands it", pytrace=False)
    pytest.skip(f"{message}; {fix}")
