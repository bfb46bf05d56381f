"""Computing a feature view over history with Polars (the batch backend of FeatureView).

One output row per usable source row: the entity keys, the event time (UTC), the created
time when the view declares one, and every feature as of that row's event time. Windowed
aggregations use Polars' ``rolling`` per entity over ``(t - window, t]``, so all rows sharing
an event time see the same window (ties are never split). Source rows with a null key or a
null event time cannot be placed on any entity's timeline: they are dropped and counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from headrace.core.features import Aggregate, FeatureView
from headrace.errors import FeatureDefinitionError

__all__ = ["ComputedView", "aggregate_expr", "compute_view", "event_time_utc", "view_input"]


@dataclass(frozen=True)
class ComputedView:
    """A computed slice of a view's offline dataset."""

    frame: pl.DataFrame
    dropped: int
    """Source rows without a key or an event time (not placeable, not in ``frame``)."""


def view_input(view: FeatureView, source: pl.LazyFrame, *, what: str) -> pl.LazyFrame:
    """The source columns the view needs, event/created time as UTC; a clear error if absent."""
    schema = source.collect_schema()
    missing = [c for c in view.source_columns if c not in schema]
    if missing:
        label = "event-time column" if view.event_time in missing else "column(s)"
        msg = (
            f"feature view {view.name!r}: {what} has no {label} "
            f"{', '.join(repr(m) for m in missing)} (it has: {', '.join(schema.names())}); "
            "fix the view's event_time / entity keys / feature columns"
        )
        raise FeatureDefinitionError(msg)
    times = [view.event_time] + ([view.created_time] if view.created_time else [])
    return source.select(view.source_columns).with_columns(
        event_time_utc(c, schema[c], view=view.name) for c in times
    )


def event_time_utc(column: str, dtype: pl.DataType, *, view: str) -> pl.Expr:
    """``column`` as ``Datetime("us", "UTC")``: naive times are taken as UTC, dates as midnight."""
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            col = col.dt.replace_time_zone("UTC")
        else:
            col = col.dt.convert_time_zone("UTC")
        return col.dt.cast_time_unit("us")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    msg = (
        f"feature view {view!r}: time column {column!r} is {dtype}, not a datetime or date; "
        "cast it in the source node (e.g. str.to_datetime())"
    )
    raise FeatureDefinitionError(msg)


def aggregate_expr(aggregate: Aggregate) -> pl.Expr:
    """The Polars aggregation of one :class:`Aggregate` (nulls skipped, counts as Int64)."""
    if aggregate.column is None:
        return pl.len().cast(pl.Int64).alias(aggregate.name)
    col = pl.col(aggregate.column)
    exprs: dict[str, pl.Expr] = {
        "count": col.count().cast(pl.Int64),
        "sum": col.sum(),
        "mean": col.mean(),
        "min": col.min(),
        "max": col.max(),
        "last": col.drop_nulls().last(),
        "stddev": col.std(ddof=1),
        "distinct_count": col.drop_nulls().n_unique().cast(pl.Int64),
    }
    return exprs[aggregate.function].alias(aggregate.name)


def _last_in_window(
    rows: pl.DataFrame, aggregate: Aggregate, keys: list[str], time: str
) -> pl.Series:
    """``last`` without a per-window pass: the newest non-null value, if inside the window.

    ``rows`` are sorted by (keys, time, created). Carrying each entity's latest non-null value
    and its time forward, then taking the value at the end of each group of tied times (a
    window includes every row sharing its time), gives the newest non-null value at or before
    each row; it counts when its time is inside (t - window, t].
    """
    assert aggregate.column is not None
    value = pl.col(aggregate.column)
    seen = pl.when(value.is_not_null()).then(pl.col(time))
    carried = rows.select(
        value.forward_fill().over(keys).alias("_v"),
        seen.forward_fill().over(keys).alias("_t"),
        *[pl.col(k) for k in keys],
        pl.col(time),
    ).select(
        pl.col("_v").last().over([*keys, time]),
        pl.col("_t").last().over([*keys, time]),
        pl.col(time),
    )
    start = pl.col(time) - pl.lit(aggregate.period, dtype=pl.Duration("us"))
    inside = pl.col("_t") > start
    return carried.select(
        pl.when(inside).then(pl.col("_v")).otherwise(None).alias(aggregate.name)
    ).to_series()


def compute_view(
    view: FeatureView,
    source: pl.LazyFrame,
    *,
    emit_from: datetime | None = None,
    ordered: bool = True,
) -> ComputedView:
    """The view's feature rows computed from ``source`` (already through :func:`view_input`).

    ``emit_from``: only return rows with event time >= it (``source`` must then hold the
    history back to ``emit_from - view.max_window`` so windows are complete). ``ordered``
    False leaves the rows in (keys, time) order instead of the stored (time, ...) order.
    """
    keys = list(view.entity.keys)
    time = view.event_time
    order = [*keys, time] + ([view.created_time] if view.created_time else [])
    placeable = pl.all_horizontal(pl.col(c).is_not_null() for c in [*keys, time])
    counted = source.with_columns(_ok=placeable).collect()
    dropped = counted.height - int(counted["_ok"].sum())
    rows = counted.filter(pl.col("_ok")).drop("_ok").sort(order, maintain_order=True)
    if view.window is not None:
        from headrace.engines.compute.windows import (
            assign_windows,
            compute_windows,
        )

        windows = compute_windows(view, assign_windows(view, rows), ordered=ordered)
        return ComputedView(windows, dropped)
    out_cols: list[pl.Expr] = [pl.col(c) for c in order]
    out_cols.extend(f.expr.alias(f.name) for f in view.row_features)
    out = rows.select(out_cols)
    by_window: defaultdict[timedelta, list[Aggregate]] = defaultdict(list)
    lasts = [a for a in view.aggregates if a.function == "last"]
    if lasts:
        out = out.with_columns(_last_in_window(rows, a, keys, time) for a in lasts)
    for aggregate in view.aggregates:
        if aggregate.function != "last":
            by_window[aggregate.period].append(aggregate)
    for window, aggregates in by_window.items():
        rolled = (
            rows.rolling(index_column=time, period=window, closed="right", group_by=keys)
            .agg(aggregate_expr(a) for a in aggregates)
            # groups come out in any order, rows within a group in time order: a stable sort
            # by key aligns them with ``out`` (tied times share one window, so one value)
            .sort(keys, maintain_order=True)
        )
        out = out.hstack(rolled.select(a.name for a in aggregates).get_columns())
    out = out.select(*order, *view.feature_names)
    if emit_from is not None:
        since = emit_from.astimezone(UTC) if emit_from.tzinfo else emit_from.replace(tzinfo=UTC)
        out = out.filter(pl.col(time) >= since)
    # Stored in (event time, created time) order: point-in-time joins then need no sort.
    if ordered:
        out = out.sort([time, *order[len(keys) + 1 :]], maintain_order=True)
    return ComputedView(out, dropped)
