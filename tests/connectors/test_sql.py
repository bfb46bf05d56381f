"""The SQL connector against the real PostgreSQL and MariaDB servers and SQLite files."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from headrace.connectors.base import LINE, SOURCE
from headrace.connectors.sql import high_water, read_sql, sql_literal
from headrace.core.source import SqlSource
from headrace.errors import SourceError, SourceUnavailableError

SECRET = "s3cr3t-Pw0rd"


@dataclass
class Db:
    """A fresh database of one kind: its DSN and a way to run SQL in it."""

    kind: str
    dsn: str
    run: Callable[[str, Sequence[Sequence[Any]]], None]
    base_dir: Path

    def sql(self, statement: str, rows: Sequence[Sequence[Any]] = ()) -> None:
        self.run(statement, rows)

    def read(self, **options: Any) -> pl.DataFrame:
        since, until = options.pop("since", None), options.pop("until", None)
        spec = SqlSource(self.dsn, **options)
        batches = list(read_sql(spec, self.base_dir, since=since, until=until))
        assert all(b.data.height <= spec.chunk_rows for b in batches)
        frames = [b.data for b in batches]
        return pl.concat(frames) if frames else pl.DataFrame()


@pytest.fixture(scope="module")
def pg_database(postgres_server: str) -> Iterator[str]:
    """One PostgreSQL database for this module (tests get a schema each: creating is slow)."""
    import psycopg

    name = f"headrace_test_sql_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A SQLAlchemy URL whose search_path is a fresh, empty schema of the module's database."""
    import psycopg

    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_database.replace("postgresql://", "postgresql+psycopg://")
    return f"{url}?options=-csearch_path%3D{schema}"


def _postgres(url: str, base_dir: Path) -> Db:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")

    def run(statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with psycopg.connect(plain, autocommit=True) as conn, conn.cursor() as cur:
            if rows:
                cur.executemany(statement.replace("?", "%s"), rows)
            else:
                cur.execute(statement)

    return Db("postgresql", url, run, base_dir)


def _mysql(url: str, base_dir: Path) -> Db:
    from urllib.parse import unquote, urlsplit

    import pymysql

    parts = urlsplit(url)

    def run(statement: str, rows: Sequence[Sequence[Any]]) -> None:
        conn = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/"),
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
        )
        with conn, conn.cursor() as cur:
            if rows:
                cur.executemany(statement.replace("?", "%s"), rows)
            else:
                cur.execute(statement)

    return Db("mysql", url, run, base_dir)


def _sqlite(tmp_path: Path) -> Db:
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "test.db"
    sqlite3.connect(path).close()

    def run(statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with sqlite3.connect(path) as conn:
            if rows:
                conn.executemany(statement, rows)
            else:
                conn.execute(statement)
        conn.close()

    # relative to base_dir, as a project's headrace.toml would say it
    return Db("sqlite", "sqlite:///data/test.db", run, tmp_path)


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
        "sqlite",
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "postgresql":
        return _postgres(request.getfixturevalue("pg_url"), tmp_path)
    if request.param == "mysql":
        return _mysql(request.getfixturevalue("mysql_url"), tmp_path)
    return _sqlite(tmp_path)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- types ---------------------------------------------------------------------------------------

TYPED_TABLES = {
    "postgresql": """CREATE TABLE typed (i integer, b bigint, f double precision, r real,
        n numeric(10, 2), t text, v varchar(20), ok boolean, d date, ts timestamp,
        tz timestamptz, j jsonb, u uuid)""",
    "mysql": """CREATE TABLE typed (i int, b bigint, f double, r float, n decimal(10, 2),
        t text, v varchar(20), ok boolean, d date, ts datetime(6), tz timestamp(6) NULL,
        j json)""",
    "sqlite": """CREATE TABLE typed (i integer, b bigint, f double, r real, n decimal(10, 2),
        t text, v varchar(20), ok boolean, d date, ts datetime)""",
}


def test_common_types_come_out_right_in_polars(db: Db) -> None:
    db.sql(TYPED_TABLES[db.kind])
    if db.kind == "postgresql":
        db.sql(
            "INSERT INTO typed VALUES (1, 9000000000, 1.5, 2.5, 12345.67, 'héllo', 'x', true,"
            " '2024-02-29', '2024-02-29 23:59:58.123456', '2024-03-01 01:02:03+02',"
            " '{\"a\": 1}', '6f1c1d9e-6c38-4c5a-9c39-0e8f3b1a2b3c')"
        )
        db.sql("INSERT INTO typed VALUES (NULL)")
    elif db.kind == "mysql":
        db.sql(
            "INSERT INTO typed VALUES (1, 9000000000, 1.5, 2.5, 12345.67, 'héllo', 'x', true,"
            " '2024-02-29', '2024-02-29 23:59:58.123456', '2024-02-29 23:02:03', '{\"a\": 1}')"
        )
        db.sql("INSERT INTO typed (i) VALUES (NULL)")
    else:
        db.sql(
            "INSERT INTO typed VALUES (1, 9000000000, 1.5, 2.5, 12345.67, 'héllo', 'x', 1,"
            " '2024-02-29', '2024-02-29 23:59:58.123456')"
        )
        db.sql("INSERT INTO typed (i) VALUES (NULL)")

    frame = db.read(table="typed").sort("i", nulls_last=True)
    schema = frame.schema
    assert schema["b"] == pl.Int64
    assert schema["i"] in {pl.Int32, pl.Int64}
    assert schema["f"] == pl.Float64
    assert schema["r"] in {pl.Float32, pl.Float64}
    # SQLite stores DECIMAL as REAL: a float is what the file holds.
    decimal = {"postgresql": pl.Decimal(10, 2), "mysql": pl.Decimal(38, 2), "sqlite": pl.Float64}
    assert schema["n"] == decimal[db.kind]
    assert schema["t"] == schema["v"] == pl.String
    assert schema["ok"] == pl.Boolean
    assert schema["d"] == pl.Date
    assert schema["ts"] == pl.Datetime("us")
    assert schema[SOURCE] == pl.String
    assert schema[LINE] == pl.Int64

    first = frame.row(0, named=True)
    assert first["b"] == 9_000_000_000
    assert first["n"] == (12345.67 if db.kind == "sqlite" else Decimal("12345.67"))
    assert first["t"] == "héllo"
    assert first["ok"] is True
    assert first["d"] == dt.date(2024, 2, 29)
    assert first["ts"] == dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    assert first[SOURCE] == "typed"
    assert first[LINE] is None
    if db.kind != "sqlite":  # SQLite has no time-zone type
        assert schema["tz"] == pl.Datetime("us", "UTC")
        assert first["tz"] == dt.datetime(2024, 2, 29, 23, 2, 3, tzinfo=dt.UTC)
        assert "a" in first["j"]
    if db.kind == "postgresql":
        assert first["u"] == "6f1c1d9e-6c38-4c5a-9c39-0e8f3b1a2b3c"
    nulls = frame.row(1, named=True)
    assert all(nulls[c] is None for c in frame.columns if c != SOURCE)


@pytest.mark.postgres
def test_unconstrained_numeric_fails_clearly_instead_of_rounding(
    pg_url: str, tmp_path: Path
) -> None:
    db = _postgres(pg_url, tmp_path)
    db.sql("CREATE TABLE money (amount numeric)")
    db.sql("INSERT INTO money VALUES (1.5), (2.25)")
    assert db.read(table="money")["amount"].to_list() == [Decimal("1.5"), Decimal("2.25")]
    db.sql("INSERT INTO money VALUES (0.123456789012)")
    with pytest.raises(SourceError, match=r"'amount'.*numeric\(p, s\)"):
        db.read(table="money")
    cast = db.read(query="SELECT amount::numeric(20, 12) AS amount FROM money")
    assert Decimal("0.123456789012") in cast["amount"].to_list()


# -- tables, queries, incremental reads -----------------------------------------------------------


def _events(db: Db, rows: Sequence[tuple[int, str, int]]) -> None:
    db.sql("CREATE TABLE IF NOT EXISTS events (id integer, name varchar(40), version integer)")
    db.sql("INSERT INTO events VALUES (?, ?, ?)", rows)


def test_table_and_query_reads(db: Db) -> None:
    _events(db, [(i, f"e{i}", i // 3) for i in range(10)])
    table = db.read(table="events")
    assert sorted(table["id"]) == list(range(10))
    assert set(table[SOURCE]) == {"events"}
    query = db.read(query="SELECT id, name FROM events WHERE id >= 5;")
    assert sorted(query["id"]) == [5, 6, 7, 8, 9]
    commented = db.read(query="SELECT id FROM events WHERE id < 2 -- a trailing comment")
    assert sorted(commented["id"]) == [0, 1]
    assert query.columns == ["id", "name", SOURCE, LINE]
    assert set(query[SOURCE]) == {"query"}


def test_incremental_reads_return_only_new_rows_with_ties(db: Db) -> None:
    _events(db, [(i, f"e{i}", i // 3) for i in range(9)])  # versions 0,0,0,1,1,1,2,2,2
    spec = SqlSource(db.dsn, table="events", cursor="version", chunk_rows=2)
    assert high_water(spec, db.base_dir) == 2
    first = pl.concat(b.data for b in read_sql(spec, db.base_dir, until=2))
    assert sorted(first["id"]) == list(range(9))

    # New rows: two tie with each other; one arrives after the high-water mark was taken.
    _events(db, [(9, "e9", 3), (10, "e10", 3), (11, "e11", 4)])
    mark = high_water(spec, db.base_dir)
    assert mark == 4
    _events(db, [(12, "late", 5)])
    second = pl.concat(b.data for b in read_sql(spec, db.base_dir, since=2, until=mark))
    assert sorted(second["id"]) == [9, 10, 11]
    third = list(read_sql(spec, db.base_dir, since=mark, until=high_water(spec, db.base_dir)))
    assert [b.data["id"].to_list() for b in third] == [[12]]
    assert list(read_sql(spec, db.base_dir, since=5, until=5)) == []


def test_high_water_of_an_empty_table_is_none(db: Db) -> None:
    db.sql("CREATE TABLE events (id integer, name varchar(40), version integer)")
    spec = SqlSource(db.dsn, table="events", cursor="version")
    assert high_water(spec, db.base_dir) is None
    assert list(read_sql(spec, db.base_dir)) == []


def test_timestamp_cursor_round_trips_through_high_water(db: Db) -> None:
    kind = {"postgresql": "timestamptz", "mysql": "datetime(6)", "sqlite": "datetime"}[db.kind]
    db.sql(f"CREATE TABLE log (id integer, at {kind})")
    stamps = [f"2024-05-01 10:00:0{i % 3}" for i in range(6)]
    db.sql("INSERT INTO log VALUES (?, ?)", list(enumerate(stamps)))
    spec = SqlSource(db.dsn, table="log", cursor="at", chunk_rows=2)
    mark = high_water(spec, db.base_dir)
    later = [(6, "2024-05-01 10:00:02"), (7, "2024-05-01 11:00:00")]
    db.sql("INSERT INTO log VALUES (?, ?)", later)
    rows = pl.concat(b.data for b in read_sql(spec, db.base_dir, since=mark))
    assert sorted(rows["id"]) == [7]


def test_sqlite_text_that_is_not_a_timestamp_fails_clearly(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    db.sql("CREATE TABLE log (id integer, at datetime)")
    db.sql("INSERT INTO log VALUES (1, '2024-05-01T10:00:00+02:00')")
    with pytest.raises(SourceError, match=r"declared type.*CAST\(col AS TEXT\)"):
        db.read(table="log")
    text = db.read(query="SELECT id, CAST(at AS TEXT) AS at FROM log")
    assert text["at"].to_list() == ["2024-05-01T10:00:00+02:00"]


def test_cursor_text_values_are_literals_that_cannot_inject(db: Db) -> None:
    db.sql("CREATE TABLE names (id integer, name varchar(40))")
    evil = "o'brien\\'; DROP TABLE names; --"
    db.sql("INSERT INTO names VALUES (?, ?)", [(1, "a"), (2, evil), (3, "zz")])
    rows = db.read(table="names", cursor="name", since=evil)
    assert rows["id"].to_list() == [3]
    assert sorted(db.read(table="names")["id"]) == [1, 2, 3]


def test_sql_literal_escapes_quotes_and_refuses_unknown_values() -> None:
    assert sql_literal("a'b\\", "postgresql") == "E'a''b\\\\'"
    assert sql_literal("a'b\\", "mysql") == "'a''b\\\\'"
    assert sql_literal("a'b", "sqlite") == "'a''b'"
    assert sql_literal(True, "postgresql") == "TRUE"
    assert sql_literal(Decimal("1E+3"), "mysql") == "1000"
    stamp = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert sql_literal(stamp, "mysql") == "'2024-01-01 10:00:00'"
    for bad in (float("nan"), b"x", "a\x00b", object()):
        with pytest.raises(SourceError):
            sql_literal(bad, "postgresql")


# -- chunks and partitions ------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", [None, "version"])
def test_chunks_are_bounded_and_cover_every_row_once(db: Db, cursor: str | None) -> None:
    _events(db, [(i, f"e{i}", i // 7) for i in range(1000)])  # runs of 7 equal cursor values
    spec = SqlSource(db.dsn, table="events", cursor=cursor, chunk_rows=50)
    batches = list(read_sql(spec, db.base_dir))
    assert len(batches) >= 20
    assert all(0 < b.data.height <= 50 for b in batches)
    ids = pl.concat(b.data["id"] for b in batches)
    assert ids.len() == ids.n_unique() == 1000
    if cursor:  # read in cursor order (what lets a dropped read resume after a run of ties)
        versions = pl.concat(b.data["version"] for b in batches)
        assert versions.is_sorted()


@given(
    values=st.lists(st.one_of(st.none(), st.integers(0, 15)), min_size=1, max_size=150),
    cuts=st.lists(st.integers(1, 40), max_size=12),
    rows=st.integers(1, 25),
)
def test_chunker_hands_over_only_whole_runs_before_reading_on(
    values: list[int | None], cuts: list[int], rows: int
) -> None:
    # What lets a dropped read resume at `cursor > last handed over`: whenever the stream is
    # read on, the rows handed over end where a run of equal cursor values ends.
    from headrace.connectors.sql.chunks import _Chunker

    ordered = pl.DataFrame({"v": values}, schema={"v": pl.Int64}).sort("v", nulls_last=False)
    chunker, handed, start = _Chunker(rows, "v"), [], 0
    for size in [*cuts, ordered.height]:
        piece = ordered.slice(start, size)
        start += piece.height
        if piece.height:
            handed += chunker.push(piece)
        done = sum(f.height for f in handed)
        if 0 < done < start:
            assert ordered["v"][done - 1] != ordered["v"][done]
    handed += chunker.finish()
    assert all(0 < f.height <= rows for f in handed)
    assert pl.concat(handed).equals(ordered)


@pytest.mark.postgres
def test_a_run_of_ties_longer_than_a_chunk_is_still_bounded(pg_url: str, tmp_path: Path) -> None:
    db = _postgres(pg_url, tmp_path)
    _events(db, [(i, "same", 1) for i in range(230)] + [(230 + i, "n", 2 + i) for i in range(30)])
    batches = list(
        read_sql(SqlSource(db.dsn, table="events", cursor="version", chunk_rows=50), tmp_path)
    )
    assert all(b.data.height <= 50 for b in batches)
    ids = pl.concat(b.data["id"] for b in batches)
    assert ids.len() == ids.n_unique() == 260


@pytest.mark.parametrize("cursor", [None, "version"])
def test_partitioned_reads_cover_every_row_once(db: Db, cursor: str | None) -> None:
    _events(db, [(i, f"e{i}", i // 5) for i in range(500)] + [(None, "no id", 1)])  # type: ignore[list-item]
    spec = SqlSource(
        db.dsn, table="events", cursor=cursor, partition_on="id", partitions=3, chunk_rows=40
    )
    since = 10 if cursor else None
    batches = list(read_sql(spec, db.base_dir, since=since))
    assert all(b.data.height <= 40 for b in batches)
    frame = pl.concat(b.data for b in batches)
    expected = 500 - 55 if cursor else 501  # version > 10 starts at id 55
    assert frame.height == expected
    assert frame["id"].drop_nulls().n_unique() == frame["id"].drop_nulls().len()


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_server_down_is_retried_then_unavailable_without_the_password(
    scheme: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = f"{scheme}://app:{SECRET}@127.0.0.1:{_closed_port()}/shop"
    spec = SqlSource(dsn, table="orders", cursor="id", retries=2, retry_delay=0.01)
    with caplog.at_level(logging.WARNING), pytest.raises(SourceUnavailableError) as caught:
        list(read_sql(spec, tmp_path, name="orders"))
    message = str(caught.value)
    assert "'orders'" in message
    assert "3 attempts" in message
    assert f"{scheme}://app:***@127.0.0.1" in message
    assert "retries=" in message  # the fix
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
    assert SECRET not in message + caplog.text + str(caught.value.__cause__)
    with pytest.raises(SourceUnavailableError):
        high_water(spec, tmp_path)


@pytest.mark.postgres
def test_postgres_wrong_dsn_fails_at_once(pg_url: str, tmp_path: Path) -> None:
    base = pg_url.split("?", 1)[0].rsplit("/", 1)[0]
    host = base.split("@", 1)[1]
    _postgres(pg_url, tmp_path).sql("CREATE TABLE events (id integer, version integer)")
    cases = [
        (f"{base}/no_such_db", {"table": "events"}, "database .* does not exist"),
        (f"postgresql://nobody:{SECRET}@{host}/postgres", {"table": "events"}, "role"),
        (pg_url, {"table": "nothere"}, "relation .* does not exist"),
        (pg_url, {"table": "events", "cursor": "nocolumn"}, "column .* does not exist"),
    ]
    for dsn, options, expected in cases:
        spec = SqlSource(dsn, retries=3, retry_delay=5.0, **options)
        started = time.monotonic()
        with pytest.raises(SourceError, match=expected) as caught:
            list(read_sql(spec, tmp_path))
        assert time.monotonic() - started < 4, "a permanent error must not be retried"
        assert type(caught.value) is SourceError
        assert "; check " in str(caught.value)  # the fix
        assert SECRET not in str(caught.value)


@pytest.mark.mysql
def test_mysql_wrong_dsn_fails_at_once(mysql_url: str, tmp_path: Path) -> None:
    base, _, database = mysql_url.rpartition("/")
    host = base.split("@", 1)[1]
    _mysql(mysql_url, tmp_path).sql("CREATE TABLE events (id integer, version integer)")
    cases = [
        (f"{base}/no_such_db", {"table": "events"}, "Unknown database"),
        (f"mysql://root:{SECRET}@{host}/{database}", {"table": "events"}, "Access denied"),
        (mysql_url, {"table": "nothere"}, "doesn't exist"),
        (mysql_url, {"table": "events", "cursor": "nocolumn"}, "Unknown column"),
    ]
    for dsn, options, expected in cases:
        spec = SqlSource(dsn, retries=3, retry_delay=5.0, **options)
        started = time.monotonic()
        with pytest.raises(SourceError, match=expected) as caught:
            list(read_sql(spec, tmp_path))
        assert time.monotonic() - started < 4
        assert type(caught.value) is SourceError
        assert SECRET not in str(caught.value)


def test_dsn_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="unknown scheme"):
        read_sql(SqlSource(f"oracle://u:{SECRET}@h/db", table="t"), tmp_path)
    with pytest.raises(SourceError, match=r"\$\{HR_MISSING_DSN\}") as caught:
        read_sql(SqlSource("${HR_MISSING_DSN}", table="t"), tmp_path)
    assert "export HR_MISSING_DSN" in str(caught.value)
    with pytest.raises(SourceError, match="does not exist"):
        read_sql(SqlSource("sqlite:///missing.db", table="t"), tmp_path)

    db = _sqlite(tmp_path)
    _events(db, [(1, "a", 1)])
    with pytest.raises(SourceError, match="since/until need a cursor"):
        read_sql(SqlSource(db.dsn, table="events"), tmp_path, since=1)
    with pytest.raises(SourceError, match="high_water needs cursor"):
        high_water(SqlSource(db.dsn, table="events"), tmp_path)
    monkeypatch.setenv("HR_DATA", "data")
    spec = SqlSource("sqlite:///${HR_DATA}/test.db", table="events")
    assert pl.concat(b.data for b in read_sql(spec, tmp_path))["id"].to_list() == [1]
    absolute = SqlSource(f"sqlite:///{tmp_path / 'data' / 'test.db'}", table="events")
    assert len(list(read_sql(absolute, Path("/nonexistent")))) == 1


# -- a connection dropped mid-read ----------------------------------------------------------------

BIG_ROWS = 300_000


@pytest.fixture(scope="module")
def big_postgres(pg_database: str) -> str:
    """A table big enough (~40 MB) to still be streaming after the first batch."""
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.big AS SELECT i AS id, i / 10 AS version,"
            f" repeat('x', 100) AS filler FROM generate_series(1, {BIG_ROWS}) AS i"
        )
    return pg_database.replace("postgresql://", "postgresql+psycopg://")


def _terminate_reader(admin_url: str, database: str) -> int:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'headrace' AND datname = %s",
            (database,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


@pytest.mark.postgres
def test_dropped_connection_resumes_without_duplicates_or_gaps(
    big_postgres: str, postgres_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = SqlSource(
        big_postgres, table="big", cursor="version", chunk_rows=5_000, retry_delay=0.01
    )
    ids: list[pl.Series] = []
    killed = 0
    with caplog.at_level(logging.WARNING):
        for batch in read_sql(spec, tmp_path, name="big"):
            ids.append(batch.data["id"])
            if len(ids) == 1:
                killed = _terminate_reader(postgres_server, big_postgres.rsplit("/", 1)[1])
    assert killed == 1
    assert "retrying" in caplog.text  # the read did drop, and was resumed
    every = pl.concat(ids)
    assert every.len() == every.n_unique() == BIG_ROWS


@pytest.mark.postgres
def test_dropped_connection_without_order_column_fails_clearly(
    big_postgres: str, postgres_server: str, tmp_path: Path
) -> None:
    spec = SqlSource(big_postgres, table="big", chunk_rows=5_000, retry_delay=0.01)
    batches = read_sql(spec, tmp_path, name="big")
    seen = next(batches).data.height
    assert _terminate_reader(postgres_server, big_postgres.rsplit("/", 1)[1]) == 1
    with pytest.raises(SourceUnavailableError, match="cannot resume: set cursor= or partition_on="):
        seen += sum(batch.data.height for batch in batches)
    assert 0 < seen < BIG_ROWS
