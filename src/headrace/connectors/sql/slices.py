"""A read as slices: one streamed, retried and resumable query each, partitions in parallel.

A read is one query per slice: one slice, or one per range of ``partition_on``, each read by
its own thread. A dropped read resumes after the last frame it handed over
(``order > last value``, :mod:`~headrace.connectors.sql.chunks`): no row twice, none missing.
A read without an order column cannot resume once it handed frames over; it fails at once,
saying so. Other faults are handled as :mod:`~headrace.connectors.sql.faults` says.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from headrace.connectors.sql.backends import _Backend
from headrace.connectors.sql.chunks import _Chunker
from headrace.connectors.sql.faults import _HARD_STOPS, _detail, _is_transient, _Retry
from headrace.connectors.sql.query import _Query, sql_literal
from headrace.connectors.sql.target import _Target
from headrace.core.source import SqlSource
from headrace.errors import SourceError, SourceUnavailableError

_START = object()


@dataclass(frozen=True)
class _Read:
    spec: SqlSource
    target: _Target
    backend: _Backend
    query: _Query
    label: str

    @property
    def order(self) -> str | None:
        return self.spec.cursor or self.spec.partition_on

    def slice(self, extra: Sequence[str]) -> Generator[pl.DataFrame]:
        """The rows of one slice, in frames; retried and resumed as the module says."""
        retry = _Retry(self.spec, self.target, self.label)
        resume: Any = _START
        while True:
            where = list(extra)
            if resume is not _START and self.order is not None:
                where.append(self.query.after(self.order, resume))
            sql = self.query.select(extra=where, order=self.order)
            chunker = _Chunker(self.spec.chunk_rows, self.order)
            try:
                for piece in self.backend.stream(sql, self.spec.chunk_rows):
                    for frame in chunker.push(piece):
                        yield frame
                        retry.failures = 0
                        resume = frame[self.order][-1] if self.order is not None else None
                yield from chunker.finish()
            except BaseException as exc:
                if isinstance(exc, _HARD_STOPS):
                    raise
                if resume is not _START and self.order is None and _is_transient(exc, self.target):
                    msg = (
                        f"{self.label}: the connection to {self.target.shown} dropped after part "
                        f"of the rows were handed over ({_detail(exc, self.target)}); without an "
                        "order column the read cannot resume: set cursor= or partition_on="
                    )
                    raise SourceUnavailableError(msg) from exc
                retry.failed(exc)
                continue
            return


def _partitions(read: _Read) -> list[list[str]]:
    """``spec.partitions`` range conditions on ``partition_on`` (NULLs in the first)."""
    column = read.spec.partition_on
    count = read.spec.partitions
    if column is None or count < 2:
        return [[]]
    name = read.query.name(column)
    low, high = _Retry(read.spec, read.target, read.label).call(
        lambda: read.backend.row(read.query.select(f"MIN({name}), MAX({name})"))
    )
    if low is None or high is None:
        return [[]]
    if not all(
        isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in (low, high)
    ):
        msg = f"{read.label}: partition_on={column!r} must be a numeric column, got {low!r}"
        raise SourceError(msg)
    if isinstance(low, int) and isinstance(high, int):
        cuts = sorted({low + (high - low + 1) * i // count for i in range(1, count)} - {low})
    else:
        step = (high - low) / count
        cuts = sorted({low + step * i for i in range(1, count)} - {low})
    literal = [sql_literal(c, read.target.dialect) for c in cuts]
    edges: list[list[str]] = []
    for i in range(len(literal) + 1):
        parts = []
        if i > 0:
            parts.append(f"{name} >= {literal[i - 1]}")
        if i < len(literal):
            parts.append(f"{name} < {literal[i]}")
        else:
            parts.append(f"{name} <= {sql_literal(high, read.target.dialect)}")
        edges.append([" AND ".join(parts) + (f" OR {name} IS NULL" if i == 0 else "")])
    return edges


def _in_parallel(slices: list[Callable[[], Generator[pl.DataFrame]]]) -> Iterator[pl.DataFrame]:
    """Frames of every slice, each read by its own thread, as they come (bounded queue)."""
    found: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=len(slices))
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                found.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def work(make: Callable[[], Generator[pl.DataFrame]]) -> None:
        try:
            with contextlib.closing(make()) as frames:
                for frame in frames:
                    if not put(("frame", frame)):
                        return
        except BaseException as exc:
            put(("error", exc))
        finally:
            put(("done", None))

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in slices]
    for thread in threads:
        thread.start()
    try:
        done = 0
        while done < len(threads):
            kind, item = found.get()
            if kind == "frame":
                yield item
            elif kind == "error":
                raise item
            else:
                done += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
