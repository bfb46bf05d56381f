"""Coercion: turning values into a contract's declared type, nulls where they do not convert.

Text is what CSV files and many APIs deliver, and Polars' ``cast`` does not parse every type
from text, so text gets its own parsers:

* ``Datetime`` / ``Date``: ISO 8601 (a ``Z`` or ``+hh:mm`` offset when the type is zoned);
* ``Boolean``: ``true``/``false``, ``t``/``f``, ``yes``/``no``, ``1``/``0`` in any case;
* numbers: surrounding blanks are ignored (``" 42"`` is 42).

>>> import polars as pl
>>> frame = pl.DataFrame({"at": ["2013-01-01T05:00:00Z", "soon"], "ok": ["Yes", "x"]})
>>> frame.select(
...     coerced("at", pl.String(), pl.Datetime("us", "UTC")).is_null(),
...     coerced("ok", pl.String(), pl.Boolean()),
... ).rows()
[(False, True), (True, None)]
"""

from __future__ import annotations

import polars as pl

__all__ = ["coerced"]

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def coerced(column: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """``column`` (of type ``source``) converted to ``target``; null where it does not convert."""
    col = pl.col(column)
    if source == target:
        return col
    if source != pl.String:
        return col.cast(target, strict=False)
    text = col.str.strip_chars()
    if isinstance(target, pl.Datetime):
        return text.str.to_datetime(
            time_unit=target.time_unit, time_zone=target.time_zone, strict=False
        )
    if isinstance(target, pl.Date):
        return text.str.to_date(strict=False)
    if isinstance(target, pl.Boolean):
        lower = text.str.to_lowercase()
        return (
            pl.when(lower.is_in(_TRUE))
            .then(pl.lit(True))
            .when(lower.is_in(_FALSE))
            .then(pl.lit(False))
            .otherwise(pl.lit(None, dtype=pl.Boolean))
        )
    return text.cast(target, strict=False)
