"""Streamed batches regrouped into frames of at most ``chunk_rows`` rows, ending on whole runs.

A read is one query per slice (one slice, or one per partition), streamed; its
batches are regrouped into frames of at most ``chunk_rows`` rows. When the read has an order
column (``cursor``, else ``partition_on``), the query is ``ORDER BY`` it and a frame is handed
over only when it ends on a *complete* run of equal order values: the rows that tie with the
last value seen are held back until a greater value (or the end) arrives. So after every frame,
every row with an order value ``<=`` the frame's last one has been handed over, and none after
it: that is the point a read resumes from. Memory is bounded by ``chunk_rows`` plus the largest
run of ties (plus one library batch).
"""

from __future__ import annotations

import polars as pl


class _Chunker:
    """Regroups streamed frames into frames of at most ``rows`` rows.

    With an ``order`` column (the stream is sorted on it) a frame is released only up to the
    last complete run of equal values: the trailing run may continue in the next batch.
    """

    def __init__(self, rows: int, order: str | None) -> None:
        self.rows, self.order = rows, order
        self.pending: list[pl.DataFrame] = []
        self.height = 0

    def push(self, piece: pl.DataFrame) -> list[pl.DataFrame]:
        self.pending.append(piece)
        self.height += piece.height
        if self.height < self.rows:
            return []
        frame = pl.concat(self.pending, how="vertical", rechunk=False)
        if self.order is None:
            take = (frame.height // self.rows) * self.rows
        else:
            # The last frame handed over must end on a run boundary: it is where a read resumes.
            complete = _before_last_run(frame, self.order)
            take = (complete // self.rows) * self.rows
            if 0 < take < complete:  # back to the start of the run that row `take` is in
                take = _before_last_run(frame.head(take + 1), self.order)
            take = take or complete
        self.pending, self.height = [frame.slice(take)], frame.height - take
        return _split(frame.head(take), self.rows)

    def finish(self) -> list[pl.DataFrame]:
        if not self.height:
            return []
        frame = pl.concat(self.pending, how="vertical", rechunk=False)
        self.pending, self.height = [], 0
        return _split(frame, self.rows)


def _before_last_run(frame: pl.DataFrame, order: str) -> int:
    """Rows before the trailing run of rows equal to the last one on ``order``."""
    last = frame.select(pl.col(order).eq_missing(pl.col(order).last())).to_series()
    if last.all():
        return 0
    first_other = last.reverse().arg_min()
    assert first_other is not None
    return frame.height - first_other


def _split(frame: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    return [frame.slice(start, rows) for start in range(0, frame.height, rows)]
