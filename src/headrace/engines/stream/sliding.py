"""Sliding ("as of now") aggregates kept incrementally.

The cost of a micro-batch follows its new rows, not the length of the windows.

:class:`~headrace.engines.stream.operators.ViewOperator` recomputes every kept row's windows
on each micro-batch, so its cost grows with the rows a window holds (a 1-minute window at 50 k
events/s keeps 3 M rows). This operator splits the rows of a view into

- *history*: rows whose own outputs went out (time below their partition's emitted bound),
  kept only as the past of later rows' windows, in arrays sorted by (entity, time) with
  per-entity prefix sums and non-null counts, plus, for ``max``/``min``, a *staircase*: the
  rows not dominated by a later row of their entity (the only ones that can still be a
  window's maximum: any trailing window holding a dominated row holds the later, larger one);
- *pending*: rows not emitted yet (the newest ones, within the disorder bound), recomputed
  with the batch engine's Polars ``rolling`` each micro-batch.

A final row at time ``t`` (``t`` below the watermark) has every history row of its entity
before it, so its window ``(t - w, t]`` is a suffix of the entity's history plus some pending
rows: a count or sum is a difference of two prefix sums (the start found by a vectorised
binary search within the entity's run), a maximum the first staircase row inside the window,
a ``last`` the entity's newest non-null history value if inside the window. Functions:
count, sum, mean, min, max of numeric columns and ``last`` of any column; a view with others
(stddev, distinct_count) uses ``ViewOperator``.

Sums are per entity, rebased when old rows are dropped, so the difference of two prefix sums
is as precise as summing the window (within 1e-9 relative of the batch engine's values).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from headrace.core.features import Aggregate, FeatureView
from headrace.engines.compute.features import aggregate_expr
from headrace.engines.stream.history import History, Located, first_after
from headrace.engines.stream.operators import PARTITION, take_partition
from headrace.errors import StreamError

__all__ = ["SlidingOperator", "incremental"]

_ID = "_hr_id"
_T = "_hr_t"
_PART = "_hr_kind"
_PLACE = "_hr_place"
_UTC = pl.Datetime("us", "UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SUPPORTED = frozenset({"count", "sum", "mean", "min", "max", "last"})


def incremental(view: FeatureView) -> bool:
    """Whether ``view`` can use :class:`SlidingOperator` (a sliding view of its functions)."""
    return view.window is None and all(a.function in SUPPORTED for a in view.aggregates)


def _us(stamp: datetime) -> int:
    return (stamp - _EPOCH) // timedelta(microseconds=1)


@dataclass
class _Search:
    """Ordering and searching rows by (entity id, time) in one micro-batch.

    Where ids and times fit, a row's place is one integer, ``id * span + (time - base)``:
    sorting is a single-column sort and finding a window's first row one ``searchsorted``.
    Otherwise (a huge time range times many entities) sorts are by two columns and searches
    a vectorised binary search within each entity's run.
    """

    base: int
    span: int | None
    _places: dict[object, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def over(operator: SlidingOperator, pending: pl.DataFrame) -> _Search:
        """The frame of reference covering ``operator``'s history and ``pending`` rows."""
        bounds = pending.select(pl.col(_T).min().alias("a"), pl.col(_T).max().alias("b")).row(0)
        times: list[int] = [int(bounds[0]), int(bounds[1])]
        kept = operator._history.bounds()
        if kept is not None:
            times += list(kept)
        low, high = min(times), max(times)
        span = high - low + 2
        fits = max(operator._n_ids, 1) * span < _LIMIT
        return _Search(low, span if fits else None)

    def key(self) -> pl.Expr:
        """The composite place of a row."""
        assert self.span is not None
        return pl.col(_ID) * self.span + (pl.col(_T) - self.base)

    def sort(self, rows: pl.DataFrame, created: str | None) -> pl.DataFrame:
        """``rows`` in (id, time[, created]) order."""
        tie = [created] if created else []
        if self.span is None:
            return rows.sort([_ID, _T, *tie], maintain_order=True)
        return rows.sort([self.key(), *tie], maintain_order=True)

    def first_after(
        self,
        name: object,
        arrays: dict[str, np.ndarray],
        starts: np.ndarray,
        ids: np.ndarray,
        x: np.ndarray,
    ) -> np.ndarray:
        """Per query: the first row of entity ``ids`` in ``arrays`` with time > ``x``.

        ``name`` names ``arrays`` (their composite places are computed once per batch).
        """
        if not arrays or not arrays["t"].size:
            first: np.ndarray = starts[ids]
            return first
        if self.span is None:
            return first_after(arrays["t"], starts[ids], starts[ids + 1], x)
        places = self._places.get(name)
        if places is None:
            places = arrays["id"] * self.span + (arrays["t"] - self.base)
            self._places[name] = places
        wanted = ids * self.span + np.clip(x - self.base, -1, self.span - 2)
        found: np.ndarray = np.searchsorted(places, wanted, side="right")
        return found.astype(np.int64)


_LIMIT = 2**62


@dataclass
class _Stair:
    """Rows of one column that can still be a window's max (or min), sorted by (id, time)."""

    frame: pl.DataFrame
    starts: np.ndarray


@dataclass
class SlidingOperator:
    """State and emission of one sliding view (see the module docs).

    Same interface as :class:`~headrace.engines.stream.operators.ViewOperator`.
    """

    view: FeatureView
    emitted: dict[int, datetime] = field(default_factory=dict)
    """Per partition: outputs with time below this were emitted."""
    pending: pl.DataFrame | None = None
    """Rows not emitted yet: the view's input columns, partition, id and time (µs)."""

    def __post_init__(self) -> None:
        view = self.view
        self._keys = list(view.entity.keys)
        self._time = view.event_time
        self._span = view.max_window // timedelta(microseconds=1)
        summed = [a.column for a in view.aggregates if a.function in ("count", "sum", "mean")]
        self._sum_cols = list(dict.fromkeys(c for c in summed if c is not None))
        stairs = [(a.column, a.function) for a in view.aggregates if a.function in ("min", "max")]
        self._stair_aggs = [(str(c), f) for c, f in dict.fromkeys(stairs)]
        lasts = [a.column for a in view.aggregates if a.function == "last"]
        self._last_cols = [str(c) for c in dict.fromkeys(lasts)]
        self._ids = pl.DataFrame()
        self._n_ids = 0
        self._history = History(self._sum_cols)
        self._newest = np.zeros(0, dtype=np.int64)
        """Per id: the newest time moved to the history (the entity's emitted past)."""
        self._stairs: dict[tuple[str, str], _Stair] = {}
        self._lasts: dict[str, pl.DataFrame] = {}
        self._checked = False
        self._search = _Search(0, None)
        self._added: list[pl.DataFrame] = []
        """Input rows since the last checkpoint (see :meth:`take_changes`)."""

    # -- the operator interface -----------------------------------------------------------

    @property
    def holds(self) -> bool:
        """Whether any row is kept (pending or history)."""
        return bool(self._size or (self.pending is not None and self.pending.height))

    def advance(
        self, new: pl.DataFrame | None, watermark: datetime | None, partitions: Collection[int]
    ) -> pl.DataFrame:
        """Add ``new`` rows; the final outputs of ``partitions`` below ``watermark``."""
        if new is not None and new.height:
            self._add_pending(new)
        pending = self.pending
        if watermark is None or pending is None or not pending.height:
            return pl.DataFrame()
        active = list(partitions)
        final = pl.col(_T) < _us(watermark)
        if set(pending[PARTITION].unique().to_list()) - set(active):
            final = final & pl.col(PARTITION).is_in(active)
        self._search = _Search.over(self, pending)
        pending = self._search.sort(pending, self.view.created_time)
        mask = pending.select(final).to_series()
        out = pl.DataFrame()
        if mask.any():
            done = pending.filter(mask)
            out = self._combine(done, self._rolled(pending).filter(mask))
            self._to_history(done)
            pending = pending.filter(~mask)
        self.pending = pending
        for partition in active:
            self.emitted[partition] = max(self.emitted.get(partition, watermark), watermark)
        self._prune()
        return out

    def flush(self, partitions: Collection[int], far: datetime) -> pl.DataFrame:
        """Emit every pending row (end of input); the bound then stays after the newest."""
        out = self.advance(None, far, partitions)
        if out.height:
            newest = out.select(pl.col(self._time).max()).item()
            for partition in partitions:
                self.emitted[partition] = newest + timedelta(microseconds=1)
        return out

    def take_changes(self, partition: int) -> tuple[pl.DataFrame, bool]:
        """The input rows of ``partition`` added since the last call.

        Never the whole state: a history segment no longer has every input column.
        """
        return take_partition(self._added, partition), False

    def keep_from(self, partition: int) -> datetime | None:
        """Rows of ``partition`` older than this can no longer count (None: all can)."""
        emitted = self.emitted.get(partition)
        return None if emitted is None else emitted - self.view.max_window

    def restore(self, partition: int, rows: pl.DataFrame | None, emitted: datetime | None) -> None:
        """Add ``partition``'s saved input rows (and its emitted bound).

        Rows before the bound become history (rebuilt with what is there, so prefix sums and
        staircases stay exact), the others pending; rows no window can reach are left out.
        """
        if emitted is not None:
            self.emitted[partition] = emitted
        if rows is None or not rows.height:
            return
        if emitted is None:
            self._add_pending(rows, record=False)
            return
        rows = rows.filter(pl.col(self._time) > emitted - self.view.max_window)
        done = rows.filter(pl.col(self._time) < emitted)
        self._add_pending(rows.filter(pl.col(self._time) >= emitted), record=False)
        if not done.height:
            return
        done = self._assign_ids(done.with_columns(pl.col(self._time).dt.epoch("us").alias(_T)))
        self._search = _Search.over(self, done)
        done = self._search.sort(done, self.view.created_time)
        ids, times = done[_ID].to_numpy(), done[_T].to_numpy()
        ends = np.flatnonzero(np.r_[ids[1:] != ids[:-1], True])
        np.maximum.at(self._newest, ids[ends], times[ends])
        if self._span:
            history = done.select(_ID, _T, PARTITION, *self._sum_cols)
            if self._size:
                kept = self._history.frame()
                history = pl.concat([kept, history], how="vertical_relaxed")
            self._rebuild(history)
        for column, function in self._stair_aggs:
            stair = self._stairs.pop((column, function), None)
            self._update_stair(column, function, done)
            if stair is not None and stair.frame.height:
                both = pl.concat([stair.frame, self._stairs.pop((column, function)).frame])
                both = both.sort(_ID, _T, maintain_order=True).rename({"_hr_v": column})
                self._update_stair(column, function, both)
        for column in self._last_cols:
            before = self._lasts.pop(column, None)
            self._update_last(column, done)
            if before is not None:
                both = pl.concat([before, self._lasts[column]]).sort(_ID, _T, maintain_order=True)
                self._lasts[column] = both.unique(_ID, keep="last", maintain_order=True)

    def release(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (another worker owns them now)."""
        gone = list(partitions)
        for partition in gone:
            self.emitted.pop(partition, None)
        mine = ~pl.col(PARTITION).is_in(gone)
        self._added = [frame.filter(mine) for frame in self._added]
        if self.pending is not None:
            self.pending = self.pending.filter(mine)
        if self._size:
            self._rebuild(self._history.frame().filter(mine))
        for key, stair in self._stairs.items():
            frame = stair.frame.filter(mine)
            self._stairs[key] = _Stair(frame, self._run_starts(frame))
        for column, lasts in self._lasts.items():
            self._lasts[column] = lasts.filter(mine)
        self._renew_newest()

    def _renew_newest(self) -> None:
        """Each entity's newest emitted time again, from the rows still kept.

        After a release, an entity of the released partitions has none: were it to come back
        (from an older checkpoint), its rows would otherwise look older than its past.
        """
        self._newest = np.full(self._n_ids, _NEVER, dtype=np.int64)
        frames = [self._history.frame() if self._size else None]
        frames += [stair.frame for stair in self._stairs.values()]
        frames += list(self._lasts.values())
        for frame in frames:
            if frame is not None and frame.height:
                np.maximum.at(self._newest, frame[_ID].to_numpy(), frame[_T].to_numpy())

    # -- pending rows ---------------------------------------------------------------------

    @property
    def _size(self) -> int:
        return self._history.size

    def _add_pending(self, new: pl.DataFrame, *, record: bool = True) -> None:
        keys = self._keys
        placeable = pl.all_horizontal(pl.col(c).is_not_null() for c in [*keys, self._time])
        rows = new.filter(placeable)
        if record:
            self._added.append(rows)
        if not self._checked:
            self._check_types(rows.schema)
        rows = rows.with_columns(pl.col(self._time).dt.epoch("us").alias(_T))
        rows = self._assign_ids(rows)
        if self.pending is not None and self.pending.height:
            rows = pl.concat(
                [self.pending, rows.select(self.pending.columns)], how="vertical_relaxed"
            )
        self.pending = rows

    def _check_types(self, schema: pl.Schema) -> None:
        self._checked = True
        for aggregate in self.view.aggregates:
            if aggregate.column is None or aggregate.function in ("count", "last"):
                continue
            dtype = schema[aggregate.column]
            if not (dtype.is_integer() or dtype.is_float()):
                msg = (
                    f"feature view {self.view.name!r}: {aggregate.function}({aggregate.column}) "
                    f"over a {dtype} column is not supported by the streaming engine; cast "
                    "the column to a number in the source node"
                )
                raise StreamError(msg)

    def _assign_ids(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` with each entity's dense integer id (new entities get the next ids)."""
        keys = self._keys
        rows = rows.drop(_ID, strict=False)
        if not self._ids.width:
            self._ids = rows.select(keys).clear().with_columns(pl.lit(0, dtype=pl.Int64).alias(_ID))
        joined = rows.join(self._ids, on=keys, how="left", nulls_equal=True, maintain_order="left")
        unknown = joined.filter(pl.col(_ID).is_null()).select(keys).unique(maintain_order=True)
        if not unknown.height:
            return joined
        start = self._n_ids
        fresh = unknown.with_columns(
            pl.int_range(start, start + unknown.height, dtype=pl.Int64).alias(_ID)
        )
        self._ids = pl.concat([self._ids, fresh], how="vertical_relaxed")
        self._n_ids += unknown.height
        self._grow()
        return rows.join(self._ids, on=keys, how="left", nulls_equal=True, maintain_order="left")

    def _grow(self) -> None:
        size = self._n_ids
        if self._newest.size < size:
            fill = np.full(size - self._newest.size, _NEVER, dtype=np.int64)
            self._newest = np.concatenate([self._newest, fill])
        for key, stair in self._stairs.items():
            if stair.starts.size < size + 1:
                extra = np.full(size + 1 - stair.starts.size, stair.starts[-1])
                self._stairs[key] = _Stair(stair.frame, np.concatenate([stair.starts, extra]))

    # -- computing final rows -------------------------------------------------------------

    def _rolled(self, pending: pl.DataFrame) -> pl.DataFrame:
        """Per pending row (sorted by id, time): each aggregate over the pending rows only.

        Polars' ``rolling``, as the batch engine computes windows. Where entity and time fit
        one integer with a window's length between entities (``id * gap + time``), one
        ungrouped pass over that index gives every entity's windows (twice as fast as a
        grouped pass); otherwise it is grouped by entity.
        """
        by_period: dict[timedelta, list[pl.Expr]] = {}
        for aggregate in self.view.aggregates:
            by_period.setdefault(aggregate.period, []).extend(_partials(aggregate))
        if not by_period:
            return pending.select(pl.lit(0).alias("_hr_none"))
        span = self._search.span
        gap = None if span is None else span + self._span
        columns: list[pl.Series] = []
        if gap is not None and max(self._n_ids, 1) * gap < _LIMIT:
            place = pl.col(_ID) * gap + (pl.col(_T) - self._search.base)
            indexed = pending.with_columns(place.alias(_PLACE))
            for period, exprs in by_period.items():
                window = f"{period // timedelta(microseconds=1)}i"
                rolling = indexed.rolling(index_column=_PLACE, period=window, closed="right")
                columns.extend(rolling.agg(exprs).drop(_PLACE).get_columns())
            return pl.DataFrame(columns)
        for period, exprs in by_period.items():
            grouped = pending.rolling(
                index_column=self._time, period=period, closed="right", group_by=_ID
            ).agg(exprs)
            grouped = grouped.sort(_ID, maintain_order=True)
            columns.extend(grouped.drop(_ID, self._time).get_columns())
        return pl.DataFrame(columns)

    def _combine(self, rows: pl.DataFrame, rolled: pl.DataFrame) -> pl.DataFrame:
        """The output rows of final ``rows``: pending partials + history contributions."""
        view = self.view
        ids = rows[_ID].to_numpy()
        times = rows[_T].to_numpy()
        if self._newest.size and bool((times < self._newest[ids]).any()):
            msg = (
                f"feature view {view.name!r}: an entity's rows came from partitions whose "
                f"outputs are at different times (the entity keys {self._keys} are not the "
                "stream's partition key); declare the stream with key= one of the view's "
                "entity keys"
            )
            raise StreamError(msg)
        order = [*self._keys, self._time] + ([view.created_time] if view.created_time else [])
        base = rows.select(*order, *(f.expr.alias(f.name) for f in view.row_features))
        found: dict[timedelta, Located] = {}
        features: list[pl.Series] = []
        for aggregate in view.aggregates:
            start = times - aggregate.period // timedelta(microseconds=1)
            if aggregate.function in ("min", "max", "last"):
                features.append(self._picked(aggregate, rolled, ids, start))
                continue
            located = found.get(aggregate.period)
            if located is None:
                located = found[aggregate.period] = self._history.locate(ids, start)
            features.append(self._summed(aggregate, rolled, located))
        out = base.with_columns(features)
        return out.select(*order, *view.feature_names)

    def _summed(self, aggregate: Aggregate, rolled: pl.DataFrame, located: Located) -> pl.Series:
        """``count``/``sum``/``mean``: the pending rows' partials plus the history's."""
        name, column = aggregate.name, aggregate.column
        count = located.rows if column is None else located.counts[column]
        if aggregate.function == "count":
            return (rolled[f"{name}:n"] + pl.Series(count)).cast(pl.Int64).alias(name)
        assert column is not None
        total = pl.Series(located.sums[column])
        part = rolled[f"{name}:s"]
        summed = part + total.cast(part.dtype, strict=False)
        if aggregate.function == "sum":
            return summed.alias(name)
        counted = rolled[f"{name}:n"] + pl.Series(count)
        frame = pl.DataFrame({"s": summed.cast(pl.Float64), "n": counted})
        mean = pl.when(pl.col("n") > 0).then(pl.col("s") / pl.col("n"))
        return frame.select(mean.alias(name)).to_series()

    def _picked(
        self, aggregate: Aggregate, rolled: pl.DataFrame, ids: np.ndarray, start: np.ndarray
    ) -> pl.Series:
        """``min``/``max``/``last``: the pending rows' value combined with the history's."""
        name, column = aggregate.name, str(aggregate.column)
        part = rolled[f"{name}:x"]
        if aggregate.function == "last":
            hist = self._last_value(column, ids, start)
            both = pl.DataFrame({"a": part, "b": hist.cast(part.dtype, strict=False)})
            return both.select(pl.coalesce("a", "b").alias(name)).to_series()
        hist = self._stair_value((column, aggregate.function), ids, start)
        both = pl.DataFrame({"a": part, "b": hist.cast(part.dtype, strict=False)})
        pick = pl.max_horizontal if aggregate.function == "max" else pl.min_horizontal
        return both.select(pick("a", "b").alias(name)).to_series().cast(part.dtype)

    def _stair_value(self, key: tuple[str, str], ids: np.ndarray, start: np.ndarray) -> pl.Series:
        stair = self._stairs.get(key)
        if stair is None or not stair.frame.height:
            return pl.Series([None] * ids.size)
        arrays = {"id": stair.frame[_ID].to_numpy(), "t": stair.frame[_T].to_numpy()}
        first = self._search.first_after(key, arrays, stair.starts, ids, start)
        values = stair.frame["_hr_v"].gather(np.minimum(first, stair.frame.height - 1))
        found = pl.Series(first < stair.starts[ids + 1])
        return (
            pl.DataFrame({"v": values, "f": found})
            .select(pl.when(pl.col("f")).then(pl.col("v")))
            .to_series()
        )

    def _last_value(self, column: str, ids: np.ndarray, start: np.ndarray) -> pl.Series:
        lasts = self._lasts.get(column)
        if lasts is None or not lasts.height:
            return pl.Series([None] * ids.size)
        query = pl.DataFrame({_ID: ids, "_hr_start": start})
        got = query.join(lasts, on=_ID, how="left", maintain_order="left")
        inside = pl.col(_T) > pl.col("_hr_start")
        return got.select(pl.when(inside).then(pl.col("_hr_v"))).to_series()

    # -- history --------------------------------------------------------------------------

    def _to_history(self, rows: pl.DataFrame) -> None:
        """Move final ``rows`` (sorted by id, time) to the history, staircases and lasts."""
        ids = rows[_ID].to_numpy()
        times = rows[_T].to_numpy()
        ends = np.flatnonzero(np.r_[ids[1:] != ids[:-1], True])
        np.maximum.at(self._newest, ids[ends], times[ends])
        if self._span:
            self._history.append(rows.select(_ID, _T, PARTITION, *self._sum_cols), self._n_ids)
        for column, function in self._stair_aggs:
            self._update_stair(column, function, rows)
        for column in self._last_cols:
            self._update_last(column, rows)

    def _update_stair(self, column: str, function: str, rows: pl.DataFrame) -> None:
        """Add ``rows`` (sorted by id, time, all after the history) to a staircase.

        A new row survives if no later new row of its entity beats or ties it; an old row
        if it beats every new row of its entity.
        """
        fresh = rows.filter(pl.col(column).is_not_null()).select(
            _ID, _T, pl.col(PARTITION).cast(pl.Int32), pl.col(column).alias("_hr_v")
        )
        maximum = function == "max"
        fresh = fresh.filter(_undominated(fresh, maximum=maximum))
        old = self._stairs.get((column, function))
        if old is not None and old.frame.height and fresh.height:
            fresh = self._merge_stair(old.frame, fresh, maximum=maximum)
        elif old is not None and not fresh.height:
            fresh = old.frame
        self._stairs[(column, function)] = _Stair(fresh, self._run_starts(fresh))

    def _merge_stair(
        self, old: pl.DataFrame, fresh: pl.DataFrame, *, maximum: bool
    ) -> pl.DataFrame:
        """Old staircase rows that beat every new row of their entity, then the new rows.

        Each new run's head is its best value (a staircase falls, or rises for min).
        """
        ids = fresh[_ID].to_numpy()
        heads = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        dtype = pl.Int64 if fresh.schema["_hr_v"].is_integer() else pl.Float64
        values = fresh["_hr_v"].cast(dtype).to_numpy()
        if dtype == pl.Int64:
            info = np.iinfo(np.int64)
            best = np.full(self._n_ids, info.min if maximum else info.max, dtype=np.int64)
        else:
            best = np.full(self._n_ids, -np.inf if maximum else np.inf)
        best[ids[heads]] = values[heads]
        old_ids = old[_ID].to_numpy()
        old_values = old["_hr_v"].cast(dtype).to_numpy()
        wins = old_values > best[old_ids] if maximum else old_values < best[old_ids]
        kept = old.filter(pl.Series(wins))
        both = pl.concat([kept, fresh], how="vertical_relaxed")
        order = np.argsort(both[_ID].to_numpy(), kind="stable")  # old rows first per entity
        return both[order]

    def _update_last(self, column: str, rows: pl.DataFrame) -> None:
        fresh = (
            rows.filter(pl.col(column).is_not_null())
            .group_by(_ID, maintain_order=True)
            .agg(
                pl.col(_T).last(),
                pl.col(PARTITION).last().cast(pl.Int32),
                pl.col(column).last().alias("_hr_v"),
            )
        )
        old = self._lasts.get(column)
        if old is not None:
            fresh = pl.concat([old, fresh], how="vertical_relaxed")
            fresh = fresh.unique(_ID, keep="last", maintain_order=True)
        self._lasts[column] = fresh

    def _run_starts(self, frame: pl.DataFrame) -> np.ndarray:
        ids = frame[_ID].to_numpy() if frame.height else np.zeros(0, np.int64)
        return self._run_starts_of(ids)

    def _run_starts_of(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(ids, np.arange(self._n_ids + 1)).astype(np.int64)

    def _prune(self) -> None:
        """Drop rows no window can reach any more (older than the bound - the max window)."""
        if not self.emitted:
            return
        bounds = {p: _us(e) - self._span for p, e in self.emitted.items()}
        low = min(bounds.values())
        alive = pl.col(_T) > pl.col(PARTITION).replace_strict(
            bounds, default=low, return_dtype=pl.Int64
        )
        for key, stair in self._stairs.items():
            frame = stair.frame.filter(alive)
            if frame.height != stair.frame.height:
                self._stairs[key] = _Stair(frame, self._run_starts(frame))
        for column, lasts in self._lasts.items():
            self._lasts[column] = lasts.filter(alive)
        self._history.drop_before(low)

    def _with_keys(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.join(self._ids, on=_ID, how="left", maintain_order="left").drop(_ID)

    def _rebuild(self, frame: pl.DataFrame) -> None:
        """The history again, as one segment, from rows (id, time, partition, columns)."""
        self._history = History(self._sum_cols)
        if frame.height:
            self._history.append(frame.sort(_ID, _T, maintain_order=True), self._n_ids)


_NEVER = np.iinfo(np.int64).min


def _undominated(rows: pl.DataFrame, *, maximum: bool) -> pl.Series:
    """Per row: whether no later row of its entity beats or ties it (a staircase row).

    ``rows`` hold id, time and ``_hr_v`` (no nulls), sorted by id and time; beating is
    exceeding for ``maximum``, else undercutting. One pass without grouping: values become
    dense ranks (negated for a minimum), offset per entity so that a reversed running maximum
    never carries across entities. Floats with NaN take Polars' way (its running maximum
    skips NaN, its comparisons put NaN on top).
    """
    values = rows["_hr_v"].to_numpy()
    if not values.size:
        return pl.Series(np.zeros(0, dtype=bool))
    ids = rows[_ID].to_numpy()
    nan = values.dtype.kind == "f" and bool(np.isnan(values).any())
    if nan or (int(ids.max()) + 1) * values.size >= _LIMIT:
        value = pl.col("_hr_v")
        after = value.cum_max() if maximum else value.cum_min()
        beats = value > pl.col("_b") if maximum else value < pl.col("_b")
        backwards = rows.reverse().with_columns(after.shift(1).over(_ID).alias("_b"))
        kept = backwards.select(pl.col("_b").is_null() | beats).to_series()
        return kept.reverse()
    _, rank = np.unique(values, return_inverse=True)
    levels = int(rank.max()) + 1
    if not maximum:
        rank = levels - 1 - rank
    places = (int(ids.max()) - ids) * levels + rank  # later entities: lower; order kept within
    reverse = places[::-1]
    before = np.maximum.accumulate(reverse)
    beats = reverse > np.r_[-1, before[:-1]]
    return pl.Series(beats[::-1].copy())


def _partials(aggregate: Aggregate) -> list[pl.Expr]:
    """What the pending rows' rolling windows give for ``aggregate``."""
    name = aggregate.name
    column = aggregate.column
    if aggregate.function == "count":
        return [aggregate_expr(aggregate).alias(f"{name}:n")]
    assert column is not None
    col = pl.col(column)
    if aggregate.function in ("sum", "mean"):
        exprs = [col.sum().alias(f"{name}:s")]
        if aggregate.function == "mean":
            exprs.append(col.count().cast(pl.Int64).alias(f"{name}:n"))
        return exprs
    if aggregate.function == "last":
        return [col.drop_nulls().last().alias(f"{name}:x")]
    return [aggregate_expr(aggregate).alias(f"{name}:x")]
