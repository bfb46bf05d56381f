"""The SQL text of a read: quoted names, literals that cannot inject, and cursor bounds.

Bounds are rendered as literals, not bound parameters: with parameters the PostgreSQL ADBC
driver does not stream (see :mod:`~headrace.connectors.sql.backends`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from headrace.connectors.sql.target import Dialect
from headrace.core.source import SqlSource
from headrace.errors import SourceError


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
