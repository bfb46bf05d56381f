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
MYSQL_ADMIN = {
    "host": os.environ.get("HEADRACE_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("HEADRACE_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("HEADRACE_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("HEADRACE_TEST_MYSQL_PASSWORD", ""),
}
REPO = Path(__file__).resolve().parents[1]


def _service_unavailable(name: str, why: str, setting: str = "HEADRACE_TEST_POSTGRES_URL") -> None:
    message = f"{name} is not reachable ({why})"
    if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; HEADRACE_REQUIRE_SERVICES=1 demands it", pytrace=False)
    pytest.skip(f"{message}; start it or set {setting}")


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


@pytest.fixture(scope="session")
def mysql_server() -> dict[str, object]:
    """Admin connection settings of the real MariaDB/MySQL server (127.0.0.1:3306 by default)."""
    import pymysql

    try:
        pymysql.connect(**MYSQL_ADMIN, connect_timeout=3).close()
    except pymysql.err.MySQLError as exc:
        _service_unavailable("MariaDB/MySQL", str(exc), "HEADRACE_TEST_MYSQL_HOST/_PORT/_USER")
    return dict(MYSQL_ADMIN)


@pytest.fixture
def mysql_url(mysql_server: dict[str, object]) -> Iterator[str]:
    """A SQLAlchemy URL (``mysql+pymysql://``) of a fresh MariaDB/MySQL database (dropped after)."""
    from urllib.parse import quote

    import pymysql

    name = f"headrace_test_{secrets.token_hex(4)}"
    with pymysql.connect(**mysql_server, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    user = quote(str(mysql_server["user"]), safe="")
    password = quote(str(mysql_server["password"]), safe="")
    auth = f"{user}:{password}" if password else user
    try:
        yield f"mysql+pymysql://{auth}@{mysql_server['host']}:{mysql_server['port']}/{name}"
    finally:
        with pymysql.connect(**mysql_server, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[object]:
    """An empty project (SQLite metadata, Delta datasets) in a temporary folder."""
    import headrace as hr

    with hr.Project.create(tmp_path / "project") as proj:
        yield proj
