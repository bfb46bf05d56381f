"""The emitted past of a sliding view, as time segments with per-entity prefix sums.

Each micro-batch's final rows become one *segment*, sorted by (entity id, time), holding per
row the exclusive prefix sum and non-null count of each summed column within the entity's run
in the segment, and per entity the cumulative totals through the segment. Segments are
disjoint in time (a batch's final rows are all newer than the previous batch's: rows become
final below a watermark that only moves forward). A trailing window ``(x, t]`` with every
history row before ``t`` is then: the rows after ``x`` in the one segment that holds ``x``
(a binary search within the entity's run), plus every later segment (a difference of two
cumulative totals). Appending and dropping expired segments touch the new rows and one value
per entity, never the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

__all__ = ["History", "Located"]

_ID = "_hr_id"
_T = "_hr_t"
PARTITION = "_hr_partition"
_LIMIT = 2**62


def first_after(times: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per query: the first index in ``[lo, hi)`` whose time is > ``x`` (``hi`` if none)."""
    lo, hi = lo.copy(), hi.copy()
    if not times.size:
        return lo
    last = times.size - 1
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) >> 1
        after = times[np.minimum(mid, last)] > x
        lo = np.where(open_ & ~after, mid + 1, lo)
        hi = np.where(open_ & after, mid, hi)


def run_prefix(values: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Per row, the sum of the values before it in its run (runs start at ``heads``).

    Each run starts again from its own first value (not from a batch-wide running total),
    so a difference of two prefixes is as precise as summing the rows between them.
    """
    if not values.size:
        return values.copy()
    shifted = values.copy()
    shifted[heads[1:]] -= np.add.reduceat(values, heads)[:-1]
    prefix: np.ndarray = np.cumsum(shifted) - values
    return prefix


def _at(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``values[ids]``, 0 for ids past the end (entities that came later)."""
    inside = ids < values.size
    out = np.zeros(ids.size, dtype=values.dtype)
    out[inside] = values[ids[inside]]
    return out


@dataclass
class _Segment:
    """One batch's rows; ``cum``: per entity, totals from the first kept segment to this one."""

    tmin: int
    tmax: int
    arrays: dict[str, np.ndarray]
    starts: np.ndarray
    cum: dict[str, np.ndarray]
    places: np.ndarray | None = None
    """Per row ``id * (tmax - tmin + 2) + (t - tmin)`` (ascending) where that fits in 62 bits."""

    def first_after(self, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Per query: the first row of entity ``ids`` with time > ``x`` (the run's end if none)."""
        if self.places is None:
            lo, hi = self.run(ids)
            return first_after(self.arrays["t"], lo, hi, x)
        span = self.tmax - self.tmin + 2
        wanted = ids * span + np.clip(x - self.tmin, -1, span - 2)
        found: np.ndarray = np.searchsorted(self.places, wanted, side="right")
        return found.astype(np.int64)

    def run(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each id's rows start and end in this segment (empty past the end)."""
        top = self.starts.size - 1
        clipped = np.minimum(ids, top)
        return self.starts[clipped], self.starts[np.minimum(clipped + 1, top)]


@dataclass(frozen=True)
class Located:
    """For each query, the history's rows in its window, per summed column."""

    rows: np.ndarray
    counts: dict[str, np.ndarray]
    sums: dict[str, np.ndarray]


@dataclass
class History:
    """The segments of one view's emitted rows (see the module docs)."""

    columns: Sequence[str]
    """Summed columns (count, sum and mean read them)."""
    segments: list[_Segment] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Rows kept."""
        return sum(int(s.arrays["t"].size) for s in self.segments)

    def bounds(self) -> tuple[int, int] | None:
        """The oldest and newest time kept (µs), None when empty."""
        if not self.segments:
            return None
        return self.segments[0].tmin, self.segments[-1].tmax

    def append(self, rows: pl.DataFrame, n_ids: int) -> None:
        """Add ``rows`` (id, time µs, partition, the columns), sorted by (id, time).

        Rows not all newer than the last segment (a replay that emitted partitions apart)
        are merged into it, keeping segments disjoint.
        """
        if not rows.height:
            return
        tmin = int(rows[_T].min())  # type: ignore[arg-type]
        while self.segments and tmin <= self.segments[-1].tmax:
            last = self.segments.pop()
            rows = pl.concat([self._frame_of(last), rows], how="vertical_relaxed")
            rows = rows.sort(_ID, _T, maintain_order=True)
            tmin = min(tmin, last.tmin)
        self.segments.append(self._segment(rows, n_ids))

    def drop_before(self, bound: int) -> None:
        """Drop segments whose rows are all at or before ``bound``; rebase the totals."""
        gone = 0
        while gone < len(self.segments) and self.segments[gone].tmax <= bound:
            gone += 1
        if not gone:
            return
        base = self.segments[gone - 1].cum
        self.segments = self.segments[gone:]
        for segment in self.segments:
            for name, values in segment.cum.items():
                values[: base[name].size] -= base[name]

    def frame(self) -> pl.DataFrame:
        """Every kept row: id, time (µs), partition and the columns (nulls restored)."""
        frames = [self._frame_of(s) for s in self.segments]
        return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()

    def locate(self, ids: np.ndarray, x: np.ndarray) -> Located:
        """Per query (entity ``ids``, window start ``x``): the history rows after ``x``.

        Their number, non-null counts and sums; every history row is before the query's time.
        """
        rows = np.zeros(ids.size, np.int64)
        counts = {c: np.zeros(ids.size, np.int64) for c in self.columns}
        sums: dict[str, np.ndarray] = {}
        for c in self.columns:
            dtype = self.segments[0].arrays[f"v:{c}"].dtype if self.segments else np.int64
            sums[c] = np.zeros(ids.size, dtype)
        if not self.segments:
            return Located(rows, counts, sums)
        tmax = np.fromiter((s.tmax for s in self.segments), np.int64, len(self.segments))
        where = np.searchsorted(tmax, x, side="right")
        newest = self.segments[-1].cum
        for j in np.unique(where):
            if j >= len(self.segments):
                continue
            pick = np.flatnonzero(where == j)
            segment, who = self.segments[j], ids[pick]
            hi = segment.run(who)[1]
            first = segment.first_after(who, x[pick])
            some = first < hi
            end = np.maximum(hi - 1, 0)
            start = np.minimum(first, max(segment.arrays["t"].size - 1, 0))
            rows[pick] = hi - first + _at(newest["rows"], who) - _at(segment.cum["rows"], who)
            for c in self.columns:
                a = segment.arrays
                n = np.where(some, a[f"n:{c}"][end] + a[f"ok:{c}"][end] - a[f"n:{c}"][start], 0)
                s = np.where(some, a[f"s:{c}"][end] + a[f"v:{c}"][end] - a[f"s:{c}"][start], 0)
                n += _at(newest[f"n:{c}"], who) - _at(segment.cum[f"n:{c}"], who)
                s = s + _at(newest[f"s:{c}"], who) - _at(segment.cum[f"s:{c}"], who)
                counts[c][pick] = n
                sums[c][pick] = s
        return Located(rows, counts, sums)

    def _segment(self, rows: pl.DataFrame, n_ids: int) -> _Segment:
        ids = rows[_ID].to_numpy()
        times = rows[_T].to_numpy()
        arrays: dict[str, np.ndarray] = {
            "id": ids,
            "t": times,
            "p": rows[PARTITION].cast(pl.Int32).to_numpy(),
        }
        ends = np.flatnonzero(np.r_[ids[1:] != ids[:-1], True])
        before = self.segments[-1].cum if self.segments else {}
        cum: dict[str, np.ndarray] = {}
        owners = ids[ends]

        def carried(name: str, dtype: np.dtype[np.generic]) -> np.ndarray:
            values = np.zeros(n_ids, dtype)
            old = before.get(name)
            if old is not None:
                values[: old.size] = old
            return values

        cum["rows"] = carried("rows", np.dtype(np.int64))
        cum["rows"] += np.bincount(ids, minlength=n_ids)
        heads = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        for c in self.columns:
            dtype = pl.Int64 if rows.schema[c].is_integer() else pl.Float64
            v = rows[c].cast(dtype).fill_null(0).to_numpy()
            ok = rows[c].is_not_null().to_numpy()
            s, n = run_prefix(v, heads), run_prefix(ok.astype(np.int64), heads)
            arrays |= {f"v:{c}": v, f"ok:{c}": ok, f"s:{c}": s, f"n:{c}": n}
            sums = carried(f"s:{c}", v.dtype)
            sums[owners] += s[ends] + v[ends]
            cum[f"s:{c}"] = sums
            counts = carried(f"n:{c}", np.dtype(np.int64))
            counts[owners] += n[ends] + ok[ends]
            cum[f"n:{c}"] = counts
        starts = np.searchsorted(ids, np.arange(n_ids + 1)).astype(np.int64)
        tmin, tmax = int(times.min()), int(times.max())
        places = None
        if max(n_ids, 1) * (tmax - tmin + 2) < _LIMIT:
            places = ids * (tmax - tmin + 2) + (times - tmin)
        return _Segment(tmin, tmax, arrays, starts, cum, places)

    def _frame_of(self, segment: _Segment) -> pl.DataFrame:
        a = segment.arrays
        frame = pl.DataFrame({_ID: a["id"], _T: a["t"], PARTITION: a["p"]})
        return frame.with_columns(
            pl.when(pl.Series(a[f"ok:{c}"])).then(pl.Series(a[f"v:{c}"])).alias(c)
            for c in self.columns
        )
