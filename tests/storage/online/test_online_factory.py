"""Opening online stores from URLs, and the errors users see when that goes wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from headrace.errors import ConfigError, OnlineStoreError
from headrace.storage.online.base import OnlineRows, OnlineTable
from headrace.storage.online.factory import open_online_store
from headrace.storage.online.redis import RedisOnlineStore
from headrace.storage.online.sql import PostgresOnlineStore, SqliteOnlineStore


@pytest.mark.parametrize(
    ("written", "where"),
    [("online.db", "online.db"), ("sqlite:///sub/online.db", "sub/online.db")],
)
def test_sqlite_paths_resolve_under_the_project(tmp_path: Path, written: str, where: str) -> None:
    with open_online_store(written, base_dir=tmp_path) as store:
        assert isinstance(store, SqliteOnlineStore)
        assert store.path == tmp_path / where


def test_absolute_sqlite_paths_stay(tmp_path: Path) -> None:
    with open_online_store(f"sqlite:///{tmp_path / 'abs.db'}", base_dir=Path("/nowhere")) as store:
        assert isinstance(store, SqliteOnlineStore)
        assert store.path == tmp_path / "abs.db"


def test_redis_urls_open_redis(redis_url: str, tmp_path: Path) -> None:
    with open_online_store(redis_url, base_dir=tmp_path) as store:
        assert isinstance(store, RedisOnlineStore)


@pytest.mark.postgres
def test_sqlalchemy_style_postgres_urls_open_postgres(postgres_url: str, tmp_path: Path) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    with open_online_store(postgres_url, base_dir=tmp_path) as store:
        assert isinstance(store, PostgresOnlineStore)
        assert store.read(OnlineTable("v", 1, ("x",), ("int",)), ["k"]) == [None]


@pytest.mark.parametrize(
    "written",
    ["mysql://app:s3cret@db/x", "sqlite://host/x.db", "s3://b/k", "", "sqlite:///:memory:"],
)
def test_unknown_forms_are_config_errors_naming_the_accepted_ones(
    written: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        open_online_store(written, base_dir=tmp_path)
    message = str(caught.value)
    assert "sqlite:///" in message
    assert "s3cret" not in message
    if written.startswith("mysql"):
        assert "mysql://app:***@db/x" in message
        assert "redis://" in message
        assert "postgresql://" in message


def test_a_missing_redis_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "headrace.storage.online.redis")
    with pytest.raises(ConfigError, match=r"pip install headrace\[redis\]"):
        open_online_store("redis://:s3cret@127.0.0.1:6379/0", base_dir=tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@127.0.0.1:1/0",
        "redis://app:s3cret@127.0.0.1:1/0",
        "postgresql://app:s3cret@127.0.0.1:1/features",
        "postgresql+psycopg://app:s3cret@127.0.0.1:1/features",
    ],
)
def test_unreachable_servers_fail_on_open_without_showing_the_password(
    url: str, tmp_path: Path
) -> None:
    with pytest.raises(OnlineStoreError) as caught:
        open_online_store(url, base_dir=tmp_path)
    message = str(caught.value)
    assert "s3cret" not in message
    assert "cannot connect to the online store" in message
    assert "127.0.0.1:1" in message
    assert "***" in message
    assert "running" in message
    assert caught.value.__cause__ is not None


def test_an_unusable_sqlite_path_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OnlineStoreError, match=r"cannot connect to .*a-file/online\.db"):
        SqliteOnlineStore(tmp_path / "a-file" / "online.db")


def test_sql_stores_refuse_feature_names_they_use_themselves(tmp_path: Path) -> None:
    with (
        SqliteOnlineStore(tmp_path / "online.db") as store,
        pytest.raises(OnlineStoreError, match="has feature 'event_us', a name the store uses"),
    ):
        store.read(OnlineTable("v", 1, ("event_us",), ("int",)), ["k"])


def test_rows_that_do_not_fit_the_table_are_online_store_errors(tmp_path: Path) -> None:
    table = OnlineTable("v", 1, ("x", "y"), ("int", "int"))
    rows = OnlineRows(["k"], [1], [None], [(1,)])
    with (
        SqliteOnlineStore(tmp_path / "online.db") as store,
        pytest.raises(OnlineStoreError, match="cannot write table 'v__v1'"),
    ):
        store.write(table, rows)
