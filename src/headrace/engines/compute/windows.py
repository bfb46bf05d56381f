"""Windowed views: assign rows to tumbling, hopping or session windows and aggregate them.

Both engines call :func:`compute_windows`: the batch engine over a view's whole source, the
streaming engine over the rows of windows still open plus each micro-batch. Windows are
aligned to the Unix epoch and half-open, ``[start, end)``; a session is
``[first event, last event + gap)`` and two events of an entity belong to one session when
they are less than ``gap`` apart.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from headrace.core.features import FeatureView
from headrace.core.windows import WINDOW_START, Hopping, Session, Tumbling
from headrace.engines.compute.features import aggregate_expr

__all__ = ["assign_windows", "compute_windows"]

_SESSION = "_hr_session"


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def assign_windows(view: FeatureView, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with a :data:`WINDOW_START` and an end column (the view's event time).

    ``rows`` hold the view's keys and its event time (UTC, microseconds), no nulls in either.
    A hopping window repeats each row once per window it falls in. Session rows must be
    complete per entity (every row of a session present).
    """
    window = view.window
    time = view.event_time
    ts = pl.col(time)
    if isinstance(window, Tumbling | Hopping):
        size, every = _us(window.size), _us(window.every)
        epoch = ts.dt.epoch("us")
        last_start = epoch - epoch % every
        if isinstance(window, Tumbling):
            starts = last_start
        else:
            rows = rows.with_columns(
                _hr_hop=pl.lit(list(range(window.windows_per_event)), dtype=pl.List(pl.Int64))
            ).explode("_hr_hop")
            starts = last_start - pl.col("_hr_hop") * every
        unit = pl.Datetime("us", "UTC")
        return rows.with_columns(
            starts.cast(unit).alias(WINDOW_START), (starts + size).cast(unit).alias("_hr_end")
        ).drop("_hr_hop", strict=False)
    assert isinstance(window, Session)
    keys = list(view.entity.keys)
    gap = pl.lit(window.gap, dtype=pl.Duration("us"))
    ordered = rows.sort([*keys, time], maintain_order=True)
    new_session = (ts - ts.shift(1).over(keys) >= gap).fill_null(value=True)
    ordered = ordered.with_columns(new_session.cum_sum().alias(_SESSION))
    bounds = pl.col(time).min().over(_SESSION), pl.col(time).max().over(_SESSION) + gap
    return ordered.with_columns(bounds[0].alias(WINDOW_START), bounds[1].alias("_hr_end")).drop(
        _SESSION
    )


def compute_windows(
    view: FeatureView, assigned: pl.DataFrame, *, ordered: bool = True
) -> pl.DataFrame:
    """One row per entity and window of :func:`assign_windows` output.

    Columns: the keys, :data:`WINDOW_START`, the event time (the window end) and the
    aggregates; in (end, keys) order unless ``ordered`` is False. Rows must come in
    event-time order within an entity when the view has a ``last`` (it takes the newest).
    """
    keys = list(view.entity.keys)
    out = (
        assigned.group_by([*keys, WINDOW_START, "_hr_end"])
        .agg(aggregate_expr(a) for a in view.aggregates)
        .rename({"_hr_end": view.event_time})
        .select(*keys, WINDOW_START, view.event_time, *view.feature_names)
    )
    return out.sort([view.event_time, *keys, WINDOW_START]) if ordered else out
