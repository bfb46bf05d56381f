"""Fixtures for the stream connectors: unique topics (the brokers are in the root conftest)."""

from __future__ import annotations

import secrets

import pytest


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (letters, digits and '-', valid on every broker)."""
    return f"hr-test-{secrets.token_hex(4)}"
