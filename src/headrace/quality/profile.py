"""Profile a frame, and suggest a contract from what the profile saw.

:func:`profile` returns one row per column (type, nulls, distinct values, range, mean, spread,
percentiles and the most frequent values). It reads the data in two passes: one ``select`` of
aggregate expressions over every column, then one of value counts for the columns whose frequent
values are worth showing (strings, booleans and low-cardinality columns).

:func:`suggest_contract` turns the same statistics into a :class:`~headrace.core.contract.Contract`
a user can edit. The suggestion describes the data exactly as seen, so it always validates the
profiled data with a quality score of 1.0; loosen its bounds before using it on new data.

Example:
    >>> import polars as pl
    >>> frame = pl.DataFrame({"id": [1, 2, 3], "status": ["new", "paid", "new"]})
    >>> profile(frame).select("column", "distinct", "min", "max").rows()
    [('id', 3, '1', '3'), ('status', 2, None, None)]
    >>> [check.rule for check in suggest_contract(frame, "orders").all_checks()]
    ['id.not_null', 'id.unique', 'id.between', 'status.not_null', 'row_count']

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from headrace.core import checks
from headrace.core.contract import Check, Contract, Field

__all__ = ["display_rows", "profile", "suggest_contract"]

TOP_VALUES = 5
"""How many frequent values a profile row lists."""
LOW_CARDINALITY = 20
"""Columns with at most this many distinct values get top values, and strings an ``isin``."""
ISIN_MAX_SHARE = 0.5
"""An ``isin`` is suggested only when distinct values are at most this share of the rows."""

PROFILE_SCHEMA = pl.Schema(
    {
        "column": pl.String(),
        "dtype": pl.String(),
        "rows": pl.Int64(),
        "null_count": pl.Int64(),
        "null_share": pl.Float64(),
        "distinct": pl.Int64(),
        "min": pl.String(),
        "max": pl.String(),
        "mean": pl.Float64(),
        "std": pl.Float64(),
        "p01": pl.String(),
        "p50": pl.String(),
        "p99": pl.String(),
        "top_values": pl.List(pl.String()),
    }
)
"""The columns of :func:`profile`. Range and percentiles are strings so dates fit too."""

_SIMPLE_TYPES = {
    "Boolean", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float32", "Float64", "String", "Date", "Time", "Categorical", "Decimal",
}  # fmt: skip
_QUANTILES = {"p01": 0.01, "p50": 0.5, "p99": 0.99}


@dataclass(frozen=True)
class _ColumnStats:
    """What one pass learnt about one column (more than :func:`profile` shows)."""

    name: str
    dtype: pl.DataType
    rows: int
    null_count: int
    distinct: int
    stats: dict[str, Any] = field(default_factory=dict)
    """min, max, mean, std, p01, p50, p99, has_nan, min_length, max_length: where they apply."""
    counts: list[tuple[str, int]] = field(default_factory=list)
    """(value as text, count), most frequent first; every value for low-cardinality columns."""
    values: list[Any] = field(default_factory=list)
    """Every distinct non-null value, for low-cardinality string columns."""


def profile(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per column of ``frame``; see :data:`PROFILE_SCHEMA` for the columns."""
    rows = []
    for column in _column_stats(frame):
        s = column.stats
        rows.append(
            {
                "column": column.name,
                "dtype": str(column.dtype),
                "rows": column.rows,
                "null_count": column.null_count,
                "null_share": column.null_count / column.rows if column.rows else None,
                "distinct": column.distinct,
                **{key: _text(s.get(key)) for key in ("min", "max", *_QUANTILES)},
                "mean": s.get("mean"),
                "std": s.get("std"),
                "top_values": [value for value, _ in column.counts[:TOP_VALUES]] or None,
            }
        )
    return pl.DataFrame(rows, schema=PROFILE_SCHEMA, orient="row")


def display_rows(table: pl.DataFrame) -> list[dict[str, Any]]:
    """The rows of a :func:`profile` as short texts for a table: 4 significant digits."""
    joined = table.with_columns(pl.col("top_values").list.join(", "))
    return [
        {key: _short(value) for key, value in row.items()} for row in joined.iter_rows(named=True)
    ]


def suggest_contract(frame: pl.DataFrame | pl.LazyFrame, name: str) -> Contract:
    """A contract describing ``frame`` as it is, for a person to review and loosen.

    Each column becomes a :class:`Field` with its type (when contracts know the type),
    ``nullable=False`` if it has no nulls, ``unique=True`` for integer or string keys, and
    checks: ``between(min, max)`` for numbers, ``isin`` for strings with few distinct values,
    ``length(n, n)`` for strings of one length. The contract checks ``row_count(min=1)`` when
    the frame has rows. The suggestion validates ``frame`` itself with a score of 1.0.
    """
    stats = _column_stats(frame)
    fields = [_field(column) for column in stats]
    has_rows = bool(stats) and stats[0].rows > 0
    return Contract(name, fields=fields, checks=[checks.row_count(min=1)] if has_rows else [])


def _field(column: _ColumnStats) -> Field:
    dtype, s = column.dtype, column.stats
    suggested: list[Check] = []
    if dtype.is_numeric() and not isinstance(dtype, pl.Decimal):
        low, high = s.get("min"), s.get("max")
        if s.get("has_nan"):  # NaN sorts above every number: keep no upper bound
            high = None
        if isinstance(low, float) and math.isnan(low):
            low = None
        if low is not None or high is not None:
            suggested.append(checks.between(low, high))
    if dtype == pl.String:
        if column.values and _few_values(column):
            suggested.append(checks.isin(column.values))
        shortest, longest = s.get("min_length"), s.get("max_length")
        if shortest is not None and shortest == longest:
            suggested.append(checks.length(shortest, longest))
    key_type = dtype.is_integer() or dtype == pl.String
    return Field(
        column.name,
        _type_name(dtype),
        nullable=column.null_count > 0,
        unique=key_type and column.rows > 1 and column.distinct == column.rows,
        checks=suggested,
    )


def _few_values(column: _ColumnStats) -> bool:
    return column.distinct <= LOW_CARDINALITY and column.distinct <= ISIN_MAX_SHARE * column.rows


def _type_name(dtype: pl.DataType) -> str | None:
    """The contract's name for ``dtype``, or None when contracts cannot name it exactly."""
    if isinstance(dtype, pl.Datetime):
        return "Datetime[UTC]" if dtype.time_zone == "UTC" else "Datetime"
    if isinstance(dtype, pl.Duration):
        return "Duration" if dtype.time_unit == "us" else None
    name = str(dtype.base_type())
    return name if name in _SIMPLE_TYPES else None


def _column_stats(frame: pl.DataFrame | pl.LazyFrame) -> list[_ColumnStats]:
    """Gather every column's statistics: one aggregate pass, one value-count pass."""
    lazy = frame.lazy()
    schema = lazy.collect_schema()
    aggregates: list[pl.Expr] = [pl.len().alias("rows")]
    for i, (name, dtype) in enumerate(schema.items()):
        col = pl.col(name)
        aggregates += [col.null_count().alias(f"{i}:null_count"), col.n_unique().alias(f"{i}:n")]
        if dtype.is_numeric() or dtype.is_temporal():
            aggregates += [col.min().alias(f"{i}:min"), col.max().alias(f"{i}:max")]
            aggregates += [
                _quantile(col, dtype, q).alias(f"{i}:{k}") for k, q in _QUANTILES.items()
            ]
        if dtype.is_numeric():
            number = col.cast(pl.Float64)
            aggregates += [number.mean().alias(f"{i}:mean"), number.std().alias(f"{i}:std")]
        if dtype.is_float():
            aggregates.append(col.is_nan().any().alias(f"{i}:has_nan"))
        if dtype == pl.String:
            length = col.str.len_chars()
            aggregates += [
                length.min().alias(f"{i}:min_length"),
                length.max().alias(f"{i}:max_length"),
            ]
    first = lazy.select(aggregates).collect().row(0, named=True)
    rows = int(first["rows"])
    columns = []
    for i, (name, dtype) in enumerate(schema.items()):
        prefix = f"{i}:"
        stats = {
            key.removeprefix(prefix): value
            for key, value in first.items()
            if key.startswith(prefix) and key not in (f"{i}:null_count", f"{i}:n")
        }
        columns.append(
            _ColumnStats(
                name,
                dtype,
                rows,
                int(first[f"{i}:null_count"]),
                int(first[f"{i}:n"]),
                stats,
            )
        )
    _add_value_counts(lazy, columns)
    return columns


def _quantile(col: pl.Expr, dtype: pl.DataType, q: float) -> pl.Expr:
    """The ``q`` quantile (nearest observed value); temporal columns via their integers."""
    if dtype.is_integer():
        return col.quantile(q, interpolation="nearest").cast(dtype)
    if not dtype.is_temporal():
        return col.quantile(q, interpolation="nearest")
    # Polars 2.1 panics on the quantile of an empty Date column; integers are fine.
    return col.to_physical().quantile(q, interpolation="nearest").cast(pl.Int64).cast(dtype)


def _add_value_counts(lazy: pl.LazyFrame, columns: list[_ColumnStats]) -> None:
    """Fill ``counts`` (and ``values`` for low-cardinality strings) in one more pass."""
    wanted = [(i, c) for i, c in enumerate(columns) if _shows_top_values(c)]
    if not wanted:
        return
    exprs = []
    for i, column in wanted:
        limit = LOW_CARDINALITY if column.distinct <= LOW_CARDINALITY + 1 else TOP_VALUES
        value = pl.col(column.name).drop_nulls().cast(pl.String).alias("value")
        entry = pl.element()
        by_count = [entry.struct.field("count"), entry.struct.field("value")]
        top = entry.sort_by(by_count, descending=[True, False]).head(limit)
        counts = value.value_counts(name="count").implode().list.eval(top)
        exprs.append(counts.first().alias(str(i)))
        if column.dtype == pl.String and _few_values(column):
            values = pl.col(column.name).drop_nulls().unique().sort().implode()
            exprs.append(values.alias(f"{i}:values"))
    found = lazy.select(exprs).collect().row(0, named=True)
    for i, column in wanted:
        column.counts.extend((entry["value"], entry["count"]) for entry in found[str(i)])
        column.values.extend(found.get(f"{i}:values") or [])


def _shows_top_values(column: _ColumnStats) -> bool:
    dtype = column.dtype
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum | pl.Boolean):
        return True
    simple = dtype.is_numeric() or dtype.is_temporal()
    return simple and not isinstance(dtype, pl.Duration) and column.distinct <= LOW_CARDINALITY


def _short(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
