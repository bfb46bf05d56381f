"""The offline store's point-in-time join: training sets from feature datasets.

For each entity row with timestamp ``t`` and each requested feature of a view, the value is
taken from the view's row with the **latest event time <= t** among that entity's rows, and
only if that event time is **>= t - ttl** (both bounds inclusive). Rows sharing that event time
are ordered by created time (newest wins, then the last read). With ``created_cutoff`` a row
also needs created time <= ``t`` (a value recorded after ``t`` did not exist at ``t``, even if it
describes an earlier event), and the newest such row by (event time, created time) wins.

The output has exactly one row per entity row, in the input order, with nulls where nothing
qualifies. Entity rows with a null key or a null timestamp get nulls and are counted.

Implementation: a sort-merge as-of join per view (Polars ``join_asof`` with ``by`` keys), never
a per-key cartesian product. ``created_cutoff`` becomes one more as-of join: with
``available = max(event time, created time)``, the qualifying rows at ``t`` are exactly those
with ``available <= t``, so a running maximum of the (event, created) order over rows sorted
by ``available`` gives the answer at every ``t``. When the feature data is larger than the
memory budget, each view is joined in hash buckets of its entity keys, one bucket in memory
at a time.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import polars as pl

from headrace.core.features import FeatureView
from headrace.errors import EntityRowsError

__all__ = ["JoinStats", "ViewSlice", "point_in_time_join", "utc_time"]

ROW = "_hr_row"
_ORD = "_hr_ord"
_AVAIL = "_hr_avail"
_BEST = "_hr_best"
_EVENT = "_hr_event"
_BUCKET = "_hr_bucket"
_TIME = "_hr_time"


@dataclass(frozen=True)
class ViewSlice:
    """The part of one view a training set reads."""

    view: FeatureView
    data: pl.LazyFrame
    """The view's offline dataset (one version of it)."""
    features: tuple[str, ...]
    columns: tuple[str, ...]
    """Output column name per feature."""
    size_bytes: int = 0
    """Estimated in-memory size of ``data`` (decides bucketing; 0 = small)."""


@dataclass(frozen=True)
class JoinStats:
    """What the join saw."""

    rows: int
    unusable_rows: int
    """Entity rows with a null key or timestamp (their features are null)."""
    buckets: dict[str, int]
    """Hash buckets used per view (1 = all in memory at once)."""


def utc_time(column: str, dtype: pl.DataType, *, what: str) -> pl.Expr:
    """``column`` as Datetime(us, UTC): naive taken as UTC, zoned converted, dates at midnight."""
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        col = (
            col.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else col.dt.convert_time_zone("UTC")
        )
        return col.dt.cast_time_unit("us")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype == pl.String:
        return col.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    msg = f"{what}: column {column!r} is {dtype}, not a timestamp; give ISO-8601 times"
    raise EntityRowsError(msg)


def point_in_time_join(
    entity_rows: pl.DataFrame,
    time_column: str,
    slices: Sequence[ViewSlice],
    *,
    created_cutoff: bool = False,
    memory_budget: int = 2 << 30,
) -> tuple[pl.DataFrame, JoinStats]:
    """``entity_rows`` with one column per requested feature, point-in-time correct."""
    _check_columns(entity_rows, time_column, slices)
    rows = entity_rows.with_row_index(ROW).with_columns(
        utc_time(time_column, entity_rows.schema[time_column], what="entity rows")
    )
    all_keys = list(dict.fromkeys(k for s in slices for k in s.view.entity.keys))
    usable = pl.all_horizontal(pl.col(c).is_not_null() for c in [time_column, *all_keys])
    unusable = rows.height - int(rows.select(usable.sum()).item())
    left = rows.select(ROW, time_column, *all_keys).sort(time_column, nulls_last=True)
    pieces = [left.select(ROW)]
    buckets: dict[str, int] = {}
    for part in slices:
        count = max(1, math.ceil(part.size_bytes / memory_budget)) if memory_budget else 1
        buckets[part.view.name] = count
        joined = _join_view(left, time_column, part, created_cutoff, count)
        if count > 1:  # buckets come back one after the other: put them in ``left``'s order
            joined = pieces[0].join(joined, on=ROW, how="left", maintain_order="left")
        pieces.append(joined.drop(ROW))  # one bucket: already in ``left``'s order
    features = pl.concat(pieces, how="horizontal").sort(ROW).drop(ROW)
    out = pl.concat([entity_rows, features], how="horizontal")
    return out, JoinStats(rows=rows.height, unusable_rows=unusable, buckets=buckets)


def _check_columns(
    entity_rows: pl.DataFrame, time_column: str, slices: Sequence[ViewSlice]
) -> None:
    if time_column not in entity_rows.columns:
        msg = (
            f"entity rows have no timestamp column {time_column!r} (they have: "
            f"{', '.join(entity_rows.columns)}); pass the column with timestamp=..."
        )
        raise EntityRowsError(msg)
    for part in slices:
        missing = [k for k in part.view.entity.keys if k not in entity_rows.columns]
        if missing:
            msg = (
                f"entity rows lack join key(s) {missing} of entity {part.view.entity.name!r} "
                f"(view {part.view.name!r}); they have: {', '.join(entity_rows.columns)}"
            )
            raise EntityRowsError(msg)


def _join_view(
    left: pl.DataFrame, time_column: str, part: ViewSlice, created_cutoff: bool, buckets: int
) -> pl.DataFrame:
    """``_hr_row`` + this view's feature columns for every row of ``left``."""
    view = part.view
    keys = list(view.entity.keys)
    # the entity time under a private name: a feature may share the caller's column name
    left = left.select(ROW, pl.col(time_column).alias(_TIME), *keys)
    if buckets > 1:  # keys hash alike on both sides only when their types are the same
        schema = part.data.collect_schema()
        left = left.with_columns(pl.col(k).cast(schema[k], strict=False) for k in keys)
    if buckets == 1:
        return _join_bucket(left, _TIME, view, part, part.data, created_cutoff, "auto")
    # Out of core: one streaming pass spills the view's rows into one Parquet file set per
    # hash bucket of the keys; then each bucket is joined with its entity rows, one at a time.
    order = [view.event_time] + ([view.created_time] if view.created_time else [])
    wanted = list(dict.fromkeys([*keys, *order, *part.features]))
    columns = part.data.select(wanted)
    outputs = []
    with tempfile.TemporaryDirectory(prefix="headrace-buckets-") as spill:
        columns.with_columns(_bucket_of(keys, buckets).alias(_BUCKET)).sink_parquet(
            pl.PartitionBy(spill, key=_BUCKET, include_key=False),
            mkdir=True,
            engine="streaming",
        )
        empty = pl.LazyFrame(schema=columns.collect_schema())
        for bucket in range(buckets):
            files = sorted(Path(spill, f"{_BUCKET}={bucket}").glob("*.parquet"))
            data = pl.scan_parquet(files) if files else empty
            mine = left.filter(_bucket_of(keys, buckets) == bucket)
            outputs.append(_join_bucket(mine, _TIME, view, part, data, created_cutoff, "streaming"))
    return pl.concat(outputs) if len(outputs) > 1 else outputs[0]


def _bucket_of(keys: list[str], buckets: int) -> pl.Expr:
    return pl.struct(keys).hash(seed=7) % buckets


def _join_bucket(  # noqa: PLR0917 - private
    left: pl.DataFrame,
    time_column: str,
    view: FeatureView,
    part: ViewSlice,
    data: pl.LazyFrame,
    created_cutoff: bool,
    engine: Literal["auto", "streaming"],
) -> pl.DataFrame:
    keys = list(view.entity.keys)
    event = view.event_time
    created = view.created_time
    renames = dict(zip(part.features, part.columns, strict=True))
    order = [event] + ([created] if created else [])
    wanted = [*keys, *order, *part.features]
    right = data.select(wanted).collect(engine=engine)
    if right[event].null_count():  # not in datasets headrace computed; cheap to check
        right = right.filter(pl.col(event).is_not_null())
    left = left.with_columns(pl.col(k).cast(right.schema[k], strict=False) for k in keys)
    if not _in_order(right, event, created):  # feature datasets are stored in this order
        right = right.sort(order, nulls_last=False, maintain_order=True)
    ttl = view.ttl_delta
    if created_cutoff and created:
        picked = _join_created_cutoff(left, time_column, keys, event, created, right)
    else:
        picked = left.join_asof(
            right.select(*keys, pl.col(event).alias(_EVENT), event, *part.features),
            left_on=time_column,
            right_on=event,
            by=keys,
            strategy="backward",
            check_sortedness=False,
        )
    fresh = pl.col(_EVENT) >= pl.col(time_column) - pl.lit(ttl, dtype=pl.Duration("us"))
    return picked.select(
        ROW,
        *[pl.when(fresh).then(pl.col(f)).otherwise(None).alias(renames[f]) for f in part.features],
    )


def _in_order(frame: pl.DataFrame, event: str, created: str | None) -> bool:
    """True when ``frame`` is sorted by event time, then created time (nulls first)."""
    if not frame[event].is_sorted():
        return False
    if created is None:
        return True
    times = frame[event]
    tie = times == times.shift(1)
    created_col = frame[created]
    backwards = created_col < created_col.shift(1)
    null_after_value = created_col.is_null() & created_col.shift(1).is_not_null()
    return not bool((tie & (backwards | null_after_value)).any())


def _join_created_cutoff(  # noqa: PLR0917 - private
    left: pl.DataFrame,
    time_column: str,
    keys: list[str],
    event: str,
    created: str,
    right: pl.DataFrame,
) -> pl.DataFrame:
    """As-of join where a row also needs created time <= t (see the module docstring)."""
    ordered = right.with_row_index(_ORD)  # sorted by (event, created): _ORD follows that order
    never = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    available = ordered.select(
        *keys,
        _ORD,
        pl.max_horizontal(pl.col(event), pl.coalesce(pl.col(created), never)).alias(_AVAIL),
    ).sort(_AVAIL, maintain_order=True)
    running = available.with_columns(pl.col(_ORD).cum_max().over(keys).alias(_BEST))
    joined = left.join_asof(
        running.select(*keys, _AVAIL, _BEST),
        left_on=time_column,
        right_on=_AVAIL,
        by=keys,
        strategy="backward",
        check_sortedness=False,
    )
    values = ordered.drop(*keys).rename({event: _EVENT}).drop(created)
    return joined.join(
        values, left_on=_BEST, right_on=_ORD, how="left", maintain_order="left"
    ).drop(_AVAIL, _BEST)


def ttl_seconds(view: FeatureView) -> float:
    """The view's TTL in seconds (for messages and statuses)."""
    return view.ttl_delta / timedelta(seconds=1)
