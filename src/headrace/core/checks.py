"""Check builders for data contracts (``hr.checks.between(0, 100)`` and friends).

Every builder takes ``severity`` (``"error"`` or ``"warn"``), ``mostly`` (the share of rows
that must pass, default 1.0) and ``name`` (the rule id). Row checks also take ``nulls``
(``"pass"`` — the default — or ``"fail"``). Inside a :class:`~headrace.core.contract.Field`
the column is implied; elsewhere give it with ``.on("column")``.

>>> between(0, 100).on("amount").rule
'amount.between'
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import polars as pl

from headrace.core.contract import Check, Severity

__all__ = [
    "aggregate",
    "between",
    "distribution",
    "expression",
    "freshness",
    "isin",
    "length",
    "matches",
    "not_null",
    "references",
    "row_count",
    "unique",
]


def _check(kind: str, params: dict[str, Any], options: dict[str, Any]) -> Check:
    severity = Severity(options.pop("severity", Severity.ERROR))
    columns = tuple(options.pop("columns", ()))
    return Check(kind, params, columns=columns, severity=severity, **options)


def not_null(**options: Any) -> Check:
    """Values must not be null."""
    return _check("not_null", {}, {"nulls": "fail", **options})


def between(min: Any = None, max: Any = None, *, inclusive: str = "both", **options: Any) -> Check:
    """``min <= value <= max`` (either bound optional; ``inclusive``: both/left/right/none)."""
    return _check("between", {"min": min, "max": max, "inclusive": inclusive}, options)


def isin(values: Iterable[Any], **options: Any) -> Check:
    """The value is one of ``values``."""
    return _check("isin", {"values": list(values)}, options)


def matches(pattern: str, **options: Any) -> Check:
    """The string matches the regular expression ``pattern`` (searched; anchor with ^...$)."""
    return _check("matches", {"pattern": pattern}, options)


def length(min: int | None = None, max: int | None = None, **options: Any) -> Check:
    """The string has between ``min`` and ``max`` characters."""
    return _check("length", {"min": min, "max": max}, options)


def unique(*columns: str, **options: Any) -> Check:
    """No two rows share the value (or the compound key of ``columns``)."""
    if columns:
        options["columns"] = columns
    return _check("unique", {}, options)


def references(dataset: str, column: str | None = None, **options: Any) -> Check:
    """The value occurs in ``column`` (default: the same name) of another ``dataset``.

    In a pipeline the dataset is read at its newest version (make it an input of the node so
    it is computed first); stand-alone, pass it to ``validate(..., lookups={name: frame})``.
    """
    return _check("references", {"dataset": dataset, "column": column}, options)


def expression(name: str, expr: pl.Expr | str, **options: Any) -> Check:
    """A row-level rule: a boolean Polars expression, or SQL text (``"amount >= qty"``)."""
    compiled = pl.sql_expr(expr) if isinstance(expr, str) else expr
    return _check("expression", {"expr": compiled, "source": str(expr)}, {"name": name, **options})


def row_count(min: int | None = None, max: int | None = None, **options: Any) -> Check:
    """The dataset has between ``min`` and ``max`` rows."""
    return _check("row_count", {"min": min, "max": max}, options)


def freshness(column: str, max_age: timedelta, **options: Any) -> Check:
    """The newest value of timestamp ``column`` is at most ``max_age`` old when validated."""
    return _check("freshness", {"max_age": max_age}, {"columns": (column,), **options})


def distribution(
    column: str,
    stat: str,
    min: float | None = None,
    max: float | None = None,
    *,
    quantile: float | None = None,
    **options: Any,
) -> Check:
    """A statistic of ``column`` (mean, std, min, max, median, null_share, quantile) in bounds."""
    params = {"stat": stat, "min": min, "max": max, "quantile": quantile}
    name = options.pop("name", None) or f"{column}.{stat}" + (f"_{quantile}" if quantile else "")
    return _check("distribution", params, {"columns": (column,), "name": name, **options})


def aggregate(
    name: str,
    expr: pl.Expr | str,
    min: float | None = None,
    max: float | None = None,
    **options: Any,
) -> Check:
    """A custom aggregate (a scalar Polars expression or SQL text) within bounds."""
    compiled = pl.sql_expr(expr) if isinstance(expr, str) else expr
    params = {"expr": compiled, "source": str(expr), "min": min, "max": max}
    return _check("aggregate", params, {"name": name, **options})
