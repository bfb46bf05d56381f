"""Sketching a frame: one vectorised pass over each column (see :mod:`.sketch`).

Numeric columns are binned with NumPy (:class:`~headrace.quality.drift.binning.EdgeIndex`)
while Polars counts the categorical columns' values on its own threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from headrace.quality.drift.binning import EdgeIndex
from headrace.quality.drift.sketch import (
    BINS,
    EXACT_VALUES,
    MAX_CATEGORIES,
    CategoricalSketch,
    ColumnSketch,
    DriftError,
    FloatArray,
    NumericSketch,
    frozen,
)

__all__ = ["sketch_frame"]


def _kind(dtype: pl.DataType) -> str | None:
    if dtype.is_numeric():
        return "numeric"
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum | pl.Boolean):
        return "categorical"
    return None


def sketch_frame(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    columns: Sequence[str] | None = None,
    like: Mapping[str, ColumnSketch] | None = None,
    bins: int = BINS,
    max_categories: int = MAX_CATEGORIES,
    exact_values: int = EXACT_VALUES,
) -> dict[str, ColumnSketch]:
    """Sketch the columns of ``frame`` (one pass over each column, vectorised).

    ``columns`` defaults to every numeric, string, categorical and boolean column (the
    columns of ``like`` when it is given; other types, dates included, are skipped).
    ``like`` takes the bin edges and the categories of other sketches (the reference, or a
    first partition): sketch current data like its reference, and partitions like the first.
    A LazyFrame is collected once (streaming engine), selecting only the sketched columns.

    Raises:
        DriftError: a column is missing, of an unsupported type, or of another kind than in
            ``like``.

    """
    schema = frame.collect_schema()
    if columns is None:
        if like is not None:
            names = [name for name in like if name in schema]
        else:
            names = [name for name, dtype in schema.items() if _kind(dtype) is not None]
    else:
        names = list(columns)
    kinds = _kinds(names, schema, like)
    data = frame.lazy().select(names).collect(engine="streaming") if names else pl.DataFrame()
    sketches: dict[str, ColumnSketch] = {}
    categorical = [name for name in names if kinds[name] == "categorical"]
    # Value counts run in Polars (threads, no GIL) while NumPy bins the numeric columns.
    with ThreadPoolExecutor(max_workers=1) as pool:
        counting = pool.submit(
            pl.collect_all,
            [data.lazy().select(pl.col(name).value_counts(sort=False)) for name in categorical],
        )
        for name in names:
            if kinds[name] == "numeric":
                base = like.get(name) if like is not None else None
                assert base is None or isinstance(base, NumericSketch)
                sketches[name] = _numeric(data.get_column(name), base, bins, exact_values)
        counted = counting.result()
    for name, values in zip(categorical, counted, strict=True):
        base = like.get(name) if like is not None else None
        assert base is None or isinstance(base, CategoricalSketch)
        sketches[name] = _categorical(name, values, schema[name], base, max_categories)
    return {name: sketches[name] for name in names}


def _kinds(
    names: Iterable[str], schema: pl.Schema, like: Mapping[str, ColumnSketch] | None
) -> dict[str, str]:
    kinds: dict[str, str] = {}
    missing = [name for name in names if name not in schema]
    if missing:
        msg = f"no column {', '.join(map(repr, missing))} in the data to sketch"
        raise DriftError(msg)
    for name in names:
        kind = _kind(schema[name])
        if kind is None:
            msg = (
                f"column {name!r} has type {schema[name]}, which drift detection does not "
                "sketch (numbers, strings, categoricals and booleans only); leave it out"
            )
            raise DriftError(msg)
        base = like.get(name) if like is not None else None
        if base is not None and base.kind != kind:
            msg = (
                f"column {name!r} is {kind} ({schema[name]}) here but {base.kind} "
                f"({base.dtype}) in the reference; cast it back or compare other columns"
            )
            raise DriftError(msg)
        kinds[name] = kind
    return kinds


def _numeric(
    series: pl.Series, like: NumericSketch | None, bins: int, exact_values: int
) -> NumericSketch:
    raw = series.cast(pl.Float64).to_numpy()
    finite = np.isfinite(raw)
    values: FloatArray = raw if finite.all() else raw[finite]
    count = len(values)
    ordered = np.sort(values) if like is None or count <= exact_values else None
    if like is not None:
        edges = like.edges
    elif count:
        assert ordered is not None
        edges = _quantile_edges(ordered, bins)
    else:
        edges = np.empty(0, dtype=np.float64)
    index = EdgeIndex(edges).bins(values)
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.int64)
    sums = np.bincount(index, weights=values, minlength=len(edges) + 1)
    mean = float(values.mean()) if count else 0.0
    deviations = values - mean
    return NumericSketch(
        name=series.name,
        dtype=str(series.dtype),
        count=count,
        missing=len(raw) - count,
        mean=mean,
        m2=float(deviations @ deviations),
        min=float(values.min()) if count else math.inf,
        max=float(values.max()) if count else -math.inf,
        edges=frozen(np.array(edges, dtype=np.float64)),
        counts=frozen(counts),
        sums=frozen(sums),
        values=frozen(ordered) if ordered is not None and count <= exact_values else None,
        exact_limit=exact_values,
    )


def _quantile_edges(ordered: FloatArray, bins: int) -> FloatArray:
    """The reference's ``bins``-quantiles, ties merged; an atom also closes its own bin.

    A value holding more than a bin's share (an atom: a count of a discrete column, a
    default value) gets a second edge just above it, so its bin holds that value alone and
    current values next to it (say 3.2 near the atom 3) land in another bin, visible to KS.
    """
    count = len(ordered)
    # the outer bins are split again and again (halves of a bin's mass, down to one value),
    # so that the tails, where a heavy-tailed column's bins are widest, are resolved too
    halves = 0.5 ** np.arange(1, max(int(np.log2(max(count / bins, 1.0))), 0) + 1) / bins
    quantiles = np.concatenate([np.linspace(0.0, 1.0, bins + 1), halves, 1.0 - halves])
    positions = np.round(quantiles * (count - 1)).astype(np.intp)
    edges = np.unique(ordered[positions])
    mass = np.searchsorted(ordered, edges, side="right") - np.searchsorted(
        ordered, edges, side="left"
    )
    atoms = edges[mass * bins > count]
    if len(atoms):
        edges = np.unique(np.concatenate([edges, np.nextafter(atoms, np.inf)]))
    return edges


def _categorical(
    name: str,
    counted: pl.DataFrame,
    dtype: pl.DataType,
    like: CategoricalSketch | None,
    max_categories: int,
) -> CategoricalSketch:
    pairs = counted.get_column(name).struct.unnest()
    keys = pairs.get_column(name)
    missing = int(pairs.filter(keys.is_null()).get_column("count").sum())
    pairs = pairs.filter(keys.is_not_null()).select(
        pl.col(name).cast(pl.String).alias("key"), pl.col("count").cast(pl.Int64)
    )
    total = int(pairs.get_column("count").sum())
    if like is None:
        top = pairs.sort(["count", "key"], descending=[True, False]).head(max_categories)
        counts = dict(
            zip(top.get_column("key").to_list(), top.get_column("count").to_list(), strict=True)
        )
        return CategoricalSketch(
            name, str(dtype), total, missing, counts, total - sum(counts.values()), max_categories
        )
    known = pl.Series("key", list(like.counts), dtype=pl.String)
    seen = dict(pairs.filter(pl.col("key").is_in(known.implode())).iter_rows())
    counts = {key: int(seen.get(key, 0)) for key in like.counts}
    if not like.other:  # the reference lists every value it had: new ones can be told apart
        new = pairs.filter(~pl.col("key").is_in(known.implode()))
        top = new.sort(["count", "key"], descending=[True, False]).head(max_categories)
        counts.update(top.iter_rows())
    return CategoricalSketch(
        name, str(dtype), total, missing, counts, total - sum(counts.values()), max_categories
    )
