"""Data-quality metrics of a dataset version, for the ``dataQualityMetrics`` facet.

Two levels, chosen by ``[lineage] column_metrics``:

* ``false`` (default) — free: row count and bytes from the version record; file count, and
  per column the null count and (numeric columns) min and max from the Parquet footers of
  the version's files. No data is read; each file's footer is read once per process.
* ``true`` — one Polars pass over the version: per column the null count and the distinct
  count (HyperLogLog estimate, ``approx_n_unique``, within ~2 %), and for numeric columns
  min, max, sum and the quantiles 0.1, 0.25, 0.5, 0.75, 0.9. Quantiles are exact up to
  :data:`QUANTILE_SAMPLE` rows and computed on an evenly spaced sample of that many rows
  above it. The cost is a read of the output plus the aggregation (measured in
  ``bench/lineage_overhead.py``; see docs/benchmarks.md).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import polars as pl

from headrace.storage.datasets import DatasetStore

__all__ = ["QUANTILES", "QUANTILE_SAMPLE", "dataset_metrics"]

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
QUANTILE_SAMPLE = 100_000
_FOOTER_CACHE_SIZE = 4096
_footers: dict[str, dict[str, dict[str, Any]]] = {}
_footers_lock = threading.Lock()


def dataset_metrics(
    store: DatasetStore,
    dataset: str,
    version: int,
    *,
    rows: int,
    size: int,
    full: bool,
) -> dict[str, Any]:
    """The ``dataQualityMetrics`` facet body (without ``_producer`` / ``_schemaURL``)."""
    from deltalake import DeltaTable

    table = DeltaTable(str(store.path(dataset)), version=version)
    files = [str(uri) for uri in table.file_uris()]
    partition_columns = set(table.metadata().partition_columns)
    body: dict[str, Any] = {"rowCount": int(rows), "bytes": int(size), "fileCount": len(files)}
    columns = _scanned(store.scan(dataset, version), rows) if full else _from_footers(files)
    body["columnMetrics"] = {
        name: metrics for name, metrics in columns.items() if name not in partition_columns
    }
    return body


# -- free: Parquet footers -----------------------------------------------------------------


def _from_footers(files: list[str]) -> dict[str, dict[str, Any]]:
    """Null counts and numeric bounds over all files.

    A metric is left out when any file or row group has no statistics for it.
    """
    merged: dict[str, dict[str, Any]] = {}
    for position, path in enumerate(files):
        per_file = _footer(path)
        for name, stats in per_file.items():
            into = merged.get(name)
            if into is None:
                merged[name] = dict(stats) if position == 0 else {}
                continue
            for key, value in list(into.items()):
                if key not in stats:
                    del into[key]
                elif key == "nullCount":
                    into[key] = value + stats[key]
                elif key == "min":
                    into[key] = min(value, stats[key])
                elif key == "max":
                    into[key] = max(value, stats[key])
        for name in merged:
            if name not in per_file:
                merged[name] = {}
    return merged


def _footer(path: str) -> dict[str, dict[str, Any]]:
    """Per top-level column of one Parquet file: null count, numeric min and max."""
    with _footers_lock:
        cached = _footers.get(path)
    if cached is not None:
        return cached
    import pyarrow.parquet as pq

    local = path.removeprefix("file://")
    metadata = pq.read_metadata(local if Path(local).exists() else path)
    out: dict[str, dict[str, Any]] = {}
    for index in range(metadata.num_columns):
        column = metadata.schema.column(index)
        if column.max_repetition_level > 0 or "." in column.path:
            continue  # inside a list or struct: not a column of the dataset
        numeric = column.physical_type in _NUMERIC_PHYSICAL and column.logical_type.type in (
            "NONE",
            "INT",
        )
        out[column.name] = _column_footer(metadata, index, numeric=numeric)
    with _footers_lock:
        if len(_footers) >= _FOOTER_CACHE_SIZE:
            _footers.pop(next(iter(_footers)))
        _footers[path] = out
    return out


_NUMERIC_PHYSICAL = frozenset({"INT32", "INT64", "FLOAT", "DOUBLE"})
"""Parquet types whose footer bounds are plain numbers (reading the bounds of timestamps,
dates or decimals would make pyarrow convert them, importing pandas)."""


def _column_footer(metadata: Any, index: int, *, numeric: bool) -> dict[str, Any]:
    nulls: int | None = 0
    bounds: list[Any] | None = [] if numeric else None
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        stats = row_group.column(index).statistics
        if stats is None:
            return {}
        if nulls is not None:
            nulls = nulls + int(stats.null_count) if stats.has_null_count else None
        if bounds is None:
            continue
        if stats.has_null_count and stats.null_count == row_group.num_rows:
            continue  # only nulls here: no bounds to take
        if stats.has_min_max and _number(stats.min) and _number(stats.max):
            bounds.extend((stats.min, stats.max))
        else:
            bounds = None  # not numeric, or a row group without bounds: leave them out
    out: dict[str, Any] = {}
    if nulls is not None:
        out["nullCount"] = nulls
    if bounds:
        out["min"], out["max"] = min(bounds), max(bounds)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# -- one pass: Polars ------------------------------------------------------------------------


def _scanned(frame: pl.LazyFrame, rows: int) -> dict[str, dict[str, Any]]:
    schema = frame.collect_schema()
    step = max(1, math.ceil(rows / QUANTILE_SAMPLE)) if rows else 1
    exprs: list[pl.Expr] = []
    for position, (name, dtype) in enumerate(schema.items()):
        column = pl.col(name)
        prefix = f"{position}\x1f"
        exprs.append(column.null_count().alias(prefix + "nullCount"))
        if not dtype.is_nested() and dtype != pl.Object:
            exprs.append(column.approx_n_unique().alias(prefix + "distinctCount"))
        if dtype.is_numeric():
            exprs.append(column.min().cast(pl.Float64).alias(prefix + "min"))
            exprs.append(column.max().cast(pl.Float64).alias(prefix + "max"))
            exprs.append(column.sum().cast(pl.Float64).alias(prefix + "sum"))
            sample = column.gather_every(step) if step > 1 else column
            exprs.extend(
                sample.cast(pl.Float64).quantile(q).alias(f"{prefix}q{q}") for q in QUANTILES
            )
    if not exprs:
        return {}
    values = frame.select(exprs).collect().row(0, named=True)
    names = list(schema)
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in values.items():
        column_index, metric = key.split("\x1f")
        target = out[names[int(column_index)]]
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if metric.startswith("q"):
            target.setdefault("quantiles", {})[metric[1:]] = float(value)
        elif metric in ("nullCount", "distinctCount"):
            target[metric] = int(value)
        else:
            target[metric] = float(value)
    for name, metrics in out.items():
        if "nullCount" in metrics:
            metrics["count"] = rows - metrics["nullCount"]
        out[name] = metrics
    return out


def footer_cache_clear() -> None:
    """Forget the footers read so far (tests)."""
    with _footers_lock:
        _footers.clear()
