"""Keyed window state of one feature view, advanced micro-batch by micro-batch.

An operator keeps the view's input rows that may still count in an output not yet emitted,
and emits an output only when it is *final*: when no event that is not late can change it.
With ``wm`` the watermark (the newest event time seen, minus the disorder bound, over the
worker's partitions; late events are those older than their partition's watermark):

- sliding ("as of now") rows at time ``t`` are final once ``t < wm``;
- a tumbling or hopping window ``[start, end)`` once ``end <= wm``; a session likewise.

Outputs are computed by :mod:`headrace.engines.compute` over the kept rows plus the new ones,
the very functions the batch engine uses, so a final row equals the batch row at that time.
Which outputs were emitted is kept per source partition (``emitted``: the watermark up to
which a partition's entities' outputs went out), so state can move between workers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import polars as pl

from headrace.core.features import FeatureView
from headrace.core.windows import WINDOW_START, Session
from headrace.engines.compute.features import compute_view
from headrace.engines.compute.windows import assign_windows, compute_windows

__all__ = ["PARTITION", "Operator", "ViewOperator", "make_operator", "take_partition"]

PARTITION = "_hr_partition"
"""Column of operator rows: the source partition the row came from."""

_UTC = pl.Datetime("us", "UTC")


@dataclass
class ViewOperator:
    """The state and emission of one feature view in a streaming job."""

    view: FeatureView
    rows: pl.DataFrame | None = None
    """Kept input rows (view input columns + :data:`PARTITION`)."""
    emitted: dict[int, datetime] = field(default_factory=dict)
    """Per partition: outputs with time below this were emitted."""
    _added: list[pl.DataFrame] = field(default_factory=list)
    """Input rows since the last checkpoint (see :meth:`take_changes`)."""

    @property
    def holds(self) -> bool:
        """Whether any row is kept."""
        return self.rows is not None and self.rows.height > 0

    def advance(
        self, new: pl.DataFrame | None, watermark: datetime | None, partitions: Collection[int]
    ) -> pl.DataFrame:
        """Add ``new`` rows; the outputs of ``partitions`` that became final below ``watermark``.

        ``watermark`` None means nothing is final yet; a far-future one flushes everything.
        Rows of other partitions are kept and not emitted (a replay after a crash redoes
        exactly the partitions the crashed checkpoint covered).
        """
        if new is None:
            if self.rows is None:
                return self._empty()
            new = self.rows.clear()
        elif new.height:
            self._added.append(new)
        rows = new if self.rows is None else pl.concat([self.rows, new], how="vertical_relaxed")
        self.rows = rows
        if watermark is None or rows.height == 0:
            return self._empty()
        view = self.view
        if view.window is None:
            out = compute_view(view, self._touched(rows, new).lazy(), ordered=False).frame
        else:
            needs_order = isinstance(view.window, Session) or any(
                a.function == "last" for a in view.aggregates
            )
            if needs_order:
                rows = rows.sort([*view.entity.keys, view.event_time], maintain_order=True)
            out = compute_windows(view, assign_windows(view, rows), ordered=False)
        out = self._with_partition(out, rows)
        active = list(partitions)
        final = self._final(out.filter(pl.col(PARTITION).is_in(active)), watermark)
        self._prune(watermark, active)
        for partition in active:
            self.emitted[partition] = max(self.emitted.get(partition, watermark), watermark)
        return final.drop(PARTITION)

    def flush(self, partitions: Collection[int], far: datetime) -> pl.DataFrame:
        """Emit everything still open (end of input): :meth:`advance` to the ``far`` watermark.

        The emitted bound then stays just after the newest output rather than at ``far``, so
        that events arriving after a flush (a resumed job) are emitted in their turn.
        """
        out = self.advance(None, far, partitions)
        if out.height:
            time = self.view.event_time
            newest = out.select(pl.col(time).max()).item()
            bound = newest + timedelta(microseconds=1) if self.view.window is None else newest
            for partition in partitions:
                self.emitted[partition] = bound
        return out

    def _touched(self, rows: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
        """The kept rows of entities that can have an output to emit.

        Those with new rows or with rows not emitted yet: the others' outputs all went out
        already. With small micro-batches (low latency) that is a small part of the state.
        """
        if not self.emitted:
            return rows
        keys = list(self.view.entity.keys)
        waiting = pl.col(self.view.event_time) >= self._since()
        touched = pl.concat(
            [new.select(keys), rows.filter(waiting | self._since().is_null()).select(keys)]
        ).unique()
        if touched.height == rows.select(keys).n_unique():
            return rows
        return rows.join(touched, on=keys, how="semi", nulls_equal=True)

    def _since(self) -> pl.Expr:
        return pl.col(PARTITION).replace_strict(dict(self.emitted), default=None, return_dtype=_UTC)

    def _final(self, out: pl.DataFrame, watermark: datetime) -> pl.DataFrame:
        time = pl.col(self.view.event_time)
        since = self._since()
        if self.view.window is None:
            fresh = time < watermark
            done = time >= since
        else:
            fresh = time <= watermark
            done = time > since
        return out.filter(fresh & (done | since.is_null()))

    def _prune(self, watermark: datetime, active: list[int]) -> None:
        assert self.rows is not None
        view = self.view
        time = pl.col(view.event_time)
        window = view.window
        other = ~pl.col(PARTITION).is_in(active)
        if window is None:
            span = view.max_window
            keep = time > (watermark - span) if span else time >= watermark
        elif isinstance(window, Session):
            ordered = self.rows.sort([*view.entity.keys, view.event_time], maintain_order=True)
            ends = assign_windows(view, ordered)
            kept = ends.filter((pl.col("_hr_end") > watermark) | other)
            self.rows = kept.drop(WINDOW_START, "_hr_end")
            return
        else:
            keep = time > (watermark - window.size)
        self.rows = self.rows.filter(keep | other)

    def _with_partition(self, out: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
        keys = list(self.view.entity.keys)
        owner = rows.select(*keys, PARTITION).unique(keys, keep="last", maintain_order=False)
        return out.join(owner, on=keys, how="left", nulls_equal=True)

    def _empty(self) -> pl.DataFrame:
        return pl.DataFrame()

    def take_changes(self, partition: int) -> tuple[pl.DataFrame, bool]:
        """What a checkpoint saves of ``partition``: (rows, whether they are its whole state).

        The input rows added since the last call, or, when fewer, every kept row (a short
        window at a high rate keeps less than a second brings).
        """
        changes = take_partition(self._added, partition)
        kept = self.rows.filter(pl.col(PARTITION) == partition) if self.rows is not None else None
        if kept is not None and kept.height <= changes.height:
            return kept, True
        return changes, False

    def keep_from(self, partition: int) -> datetime | None:
        """Rows of ``partition`` older than this are no longer kept (None: all may be)."""
        if self.rows is None:
            return self.emitted.get(partition)
        mine = self.rows.filter(pl.col(PARTITION) == partition)
        if not mine.height:
            return self.emitted.get(partition)
        oldest: datetime = mine.select(pl.col(self.view.event_time).min()).item()
        return oldest

    def restore(self, partition: int, rows: pl.DataFrame | None, emitted: datetime | None) -> None:
        """Add ``partition``'s saved input rows (and its emitted bound) to the state.

        Rows that a prune had dropped may come back (a checkpoint keeps rows by time); their
        outputs were emitted, so they are not emitted again, and the next prune drops them.
        """
        if emitted is not None:
            self.emitted[partition] = emitted
        if rows is not None and rows.height:
            merged = [r for r in (self.rows, rows) if r is not None]
            self.rows = pl.concat(merged, how="vertical_relaxed")

    def release(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (another worker owns them now)."""
        gone = list(partitions)
        if self.rows is not None:
            self.rows = self.rows.filter(~pl.col(PARTITION).is_in(gone))
        self._added = [frame.filter(~pl.col(PARTITION).is_in(gone)) for frame in self._added]
        for partition in gone:
            self.emitted.pop(partition, None)


class Operator(Protocol):
    """What the runtime needs of a view's operator.

    :class:`ViewOperator`, or the incremental
    :class:`~headrace.engines.stream.sliding.SlidingOperator`.
    """

    view: FeatureView
    emitted: dict[int, datetime]

    @property
    def holds(self) -> bool:
        """Whether any row is kept."""
        ...

    def advance(
        self, new: pl.DataFrame | None, watermark: datetime | None, partitions: Collection[int]
    ) -> pl.DataFrame:
        """Add ``new`` rows; the outputs of ``partitions`` that became final."""
        ...

    def flush(self, partitions: Collection[int], far: datetime) -> pl.DataFrame:
        """Emit everything still open."""
        ...

    def take_changes(self, partition: int) -> tuple[pl.DataFrame, bool]:
        """What a checkpoint saves of ``partition``.

        Its input rows since the last call, or its whole state (then True).
        """
        ...

    def keep_from(self, partition: int) -> datetime | None:
        """Rows of ``partition`` older than this are not needed any more."""
        ...

    def restore(self, partition: int, rows: pl.DataFrame | None, emitted: datetime | None) -> None:
        """Add ``partition``'s saved input rows and emitted bound."""
        ...

    def release(self, partitions: Iterable[int]) -> None:
        """Forget ``partitions``' state."""
        ...


def make_operator(view: FeatureView) -> Operator:
    """The incremental sliding operator where the view allows it, else :class:`ViewOperator`."""
    from headrace.engines.stream.sliding import SlidingOperator, incremental

    return SlidingOperator(view) if incremental(view) else ViewOperator(view)


def take_partition(added: list[pl.DataFrame], partition: int) -> pl.DataFrame:
    """Remove ``partition``'s rows from the frames ``added`` (in place) and return them."""
    if not added:
        return pl.DataFrame()
    rows = pl.concat(added, how="vertical_relaxed") if len(added) > 1 else added[0]
    mine = pl.col(PARTITION) == partition
    rest = rows.filter(~mine)
    added[:] = [rest] if rest.height else []
    return rows.filter(mine)
