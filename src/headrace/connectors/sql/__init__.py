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

How the work is shared out: :mod:`~headrace.connectors.sql.target` turns the DSN into what
the reading library takes; :mod:`~headrace.connectors.sql.query` writes the SQL (the cursor
bounds as literals, :func:`sql_literal`); :mod:`~headrace.connectors.sql.backends` streams it
(ADBC for PostgreSQL, connectorx for MySQL/MariaDB and SQLite, and why);
:mod:`~headrace.connectors.sql.slices` reads one resumable query per slice, partitions in
parallel; :mod:`~headrace.connectors.sql.chunks` regroups the batches into frames that end on
whole runs of ties; :mod:`~headrace.connectors.sql.faults` retries what waiting can fix.

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

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from headrace.connectors.base import LINE, SOURCE, Batch
from headrace.connectors.sql.backends import _backend
from headrace.connectors.sql.faults import _Retry
from headrace.connectors.sql.query import _bounds, _Query, sql_literal
from headrace.connectors.sql.slices import _in_parallel, _partitions, _Read
from headrace.connectors.sql.target import _target
from headrace.core.source import SqlSource
from headrace.errors import SourceError

__all__ = ["high_water", "read_sql", "sql_literal"]


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
