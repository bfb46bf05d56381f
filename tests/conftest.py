"""Shared fixtures: temporary projects and the real services on this machine.

Service-backed tests skip with a reason when the service is unreachable, unless
HEADRACE_REQUIRE_SERVICES=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "HEADRACE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REPO = Path(__file__).resolve().parents[1]


def _service_unavailable(name: str, why: str) -> None:
    message = f"{name} is not reachable ({why})"
    if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; HEADRACE_REQUIRE_SERVICES=1 demands it", pytrace=False)
    pytest.skip(f"{message}; start it or set HEADRACE_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the real PostgreSQL server (127.0.0.1:5432 by default)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        _service_unavailable("PostgreSQL", str(exc).strip().splitlines()[0])
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    import psycopg

    name = f"headrace_test_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def project(tmp_path: Path) -> Iterator[object]:
    """An empty project (SQLite metadata, Delta datasets) in a temporary folder."""
    import headrace as hr

    with hr.Project.create(tmp_path / "project") as proj:
        yield proj
