"""Bytewax's side of the streaming benchmark (runs in bench/.venvs/bytewax).

    bench/.venvs/bytewax/bin/python bench/peers/stream_bytewax.py --events PATH.parquet \
        --out PATH.parquet --clock default|fast [--workers 1] [--batch 1000] \
        [--source testing|partitioned] [--check]

Reads the events (``key`` String, ``ts`` Datetime us UTC, ``value`` Float64, in event-time
order with bounded disorder) into Python tuples (not timed), then times one Bytewax run of:
local input -> ``key_on(key)`` -> ``fold_window`` (count, sum, max) on a 1-minute
``TumblingWindower`` aligned to 2026-01-01T00:00:00Z with an ``EventClock`` on ``ts`` that
waits 5 s of system time for disorder. Closed windows and late events are collected with
``TestingSink``; the windows are written to ``--out`` (``key``, ``window_start``, ``count``,
``mean``, ``max``, sorted by key, window_start).

The two clocks (what the streaming issue measured):

- ``default``: ``EventClock(ts_getter, wait_for_system_duration=5s)`` with Bytewax's defaults
  (``now_getter`` = system UTC, ``to_system_utc`` = identity). Every key with a queued item or
  an open window asks to be woken at an event time; replayed event times are in the past in
  system time, so each activation calls ``on_notify``/``notify_at`` on every such key (with
  10 k keys, nearly all) from Python.
- ``fast``: the same clock with ``to_system_utc=lambda _: None``: the runtime never wakes a
  key for a window; windows close when a newer item for the key moves its watermark past
  them, or at EOF ("window wake-ups disabled").

Both clocks add the system time elapsed since a key's newest event to its watermark. A run
whose event time advances slower than the wall clock (1 ms between events: < 1,000 events/s),
or one stalled for seconds (a busy machine), closes windows early: late events, and windows that
re-open once a key's state was dropped (duplicate key/window rows), so ``--check`` fails.

The input is ``TestingSource(rows, batch_size=--batch)`` (Bytewax's local input) or, with
``--source partitioned``, a one-partition ``FixedPartitionedSource`` that slices the list.
``--check`` compares the windows with Polars ``group_by_dynamic`` on the same events (late
events, if any, removed from the reference). Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bytewax.operators as op
import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

Row = tuple[str, datetime, float]  # (key, ts, value)
Acc = list[float]  # [count, sum, max], mutated in place by the folder

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALIGN_TO = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(minutes=1)
DISORDER = timedelta(seconds=5)


def load_rows(path: Path) -> tuple[pl.DataFrame, list[Row]]:
    """The events frame and its rows as tuples, ``ts`` as ``datetime`` in ``timezone.utc``."""
    events = pl.read_parquet(path, columns=["key", "ts", "value"])
    micros = events["ts"].dt.epoch("us").to_list()
    rows = [
        (key, UNIX_EPOCH + timedelta(microseconds=us), value)
        for key, us, value in zip(
            events["key"].to_list(), micros, events["value"].to_list(), strict=True
        )
    ]
    return events, rows


class _SlicePartition(StatefulSourcePartition[Row, int]):
    def __init__(self, rows: list[Row], batch: int, start: int | None) -> None:
        self._rows, self._batch, self._pos = rows, batch, start or 0

    def next_batch(self) -> list[Row]:
        if self._pos >= len(self._rows):
            raise StopIteration
        batch = self._rows[self._pos : self._pos + self._batch]
        self._pos += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._pos


class SliceSource(FixedPartitionedSource[Row, int]):
    """One partition reading an in-memory list in order, ``batch`` rows per ``next_batch``."""

    def __init__(self, rows: list[Row], batch: int) -> None:
        self._rows, self._batch = rows, batch

    def list_parts(self) -> list[str]:
        return ["rows"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _SlicePartition:
        return _SlicePartition(self._rows, self._batch, resume_state)


def _key(row: Row) -> str:
    return row[0]


def _ts(row: Row) -> datetime:
    return row[1]


def _no_wake_up(_event_time: datetime) -> datetime | None:
    return None


def _new_acc() -> Acc:
    return [0.0, 0.0, float("-inf")]


def _fold(acc: Acc, row: Row) -> Acc:
    value = row[2]
    acc[0] += 1.0
    acc[1] += value
    if value > acc[2]:
        acc[2] = value
    return acc


def _merge(a: Acc, b: Acc) -> Acc:  # tumbling windows never merge
    return [a[0] + b[0], a[1] + b[1], max(a[2], b[2])]


def build_flow(
    rows: list[Row],
    *,
    clock: str,
    source: str,
    batch: int,
    windows: list[tuple[str, tuple[int, Acc]]],
    late: list[tuple[str, tuple[int, Row]]],
) -> Dataflow:
    flow = Dataflow("stream_bytewax")
    src = TestingSource(rows, batch_size=batch) if source == "testing" else SliceSource(rows, batch)
    events = op.input("events", flow, src)
    keyed = op.key_on("key", events, _key)
    wake_ups: dict[str, Any] = {"to_system_utc": _no_wake_up} if clock == "fast" else {}
    event_clock = EventClock(ts_getter=_ts, wait_for_system_duration=DISORDER, **wake_ups)
    windower = TumblingWindower(length=WINDOW, align_to=ALIGN_TO)
    out = fold_window("window", keyed, event_clock, windower, _new_acc, _fold, _merge)
    op.output("windows", out.down, TestingSink(windows))
    op.output("late", out.late, TestingSink(late))
    return flow


def run(flow: Dataflow, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds of one run (epoch interval: Bytewax's default, 10 s)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    if workers == 1:
        run_main(flow)  # type: ignore[no-untyped-call]
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)  # type: ignore[no-untyped-call]
    return time.perf_counter() - started, time.process_time() - cpu_started


def windows_frame(windows: list[tuple[str, tuple[int, Acc]]]) -> pl.DataFrame:
    align_us = int((ALIGN_TO - UNIX_EPOCH) / timedelta(microseconds=1))
    window_us = int(WINDOW / timedelta(microseconds=1))
    keys = [key for key, _ in windows]
    ids = [window_id for _, (window_id, _) in windows]
    accs = [acc for _, (_, acc) in windows]
    return (
        pl.DataFrame(
            {
                "key": pl.Series(keys, dtype=pl.String),
                "window_start": pl.Series(ids, dtype=pl.Int64) * window_us + align_us,
                "count": pl.Series([a[0] for a in accs], dtype=pl.Float64).cast(pl.Int64),
                "sum": pl.Series([a[1] for a in accs], dtype=pl.Float64),
                "max": pl.Series([a[2] for a in accs], dtype=pl.Float64),
            }
        )
        .select(
            "key",
            pl.col("window_start").cast(pl.Datetime("us", "UTC")),
            "count",
            mean=pl.col("sum") / pl.col("count"),
            max="max",
        )
        .sort("key", "window_start")
    )


def check(events: pl.DataFrame, got: pl.DataFrame, late: list[Row]) -> dict[str, Any]:
    """Compare with Polars tumbling windows on the same events, late events removed."""
    if late:
        late_frame = pl.DataFrame(
            {
                "key": [r[0] for r in late],
                "ts": pl.Series([r[1] for r in late]).cast(pl.Datetime("us", "UTC")),
                "value": [r[2] for r in late],
            }
        )
        events = events.join(late_frame, on=["key", "ts", "value"], how="anti")
    ref = (
        events.sort("ts")
        .group_by_dynamic("ts", every="1m", group_by="key", closed="left", label="left")
        .agg(
            count=pl.len().cast(pl.Int64),
            mean=pl.col("value").mean(),
            max=pl.col("value").max(),
        )
        .rename({"ts": "window_start"})
        .sort("key", "window_start")
    )
    result: dict[str, Any] = {"reference_windows": ref.height, "late_removed": len(late)}
    same_windows = got.height == ref.height and got.select("key", "window_start").equals(
        ref.select("key", "window_start")
    )
    if not same_windows:
        joined = got.join(ref, on=["key", "window_start"], how="full", coalesce=True)
        result["windows_only_bytewax"] = joined.filter(pl.col("count_right").is_null()).height
        result["windows_only_polars"] = joined.filter(pl.col("count").is_null()).height
        result["ok"] = False
        return result
    rel = ((got["mean"] - ref["mean"]).abs() / ref["mean"].abs().clip(lower_bound=1e-300)).max()
    result["count_equal"] = got["count"].equals(ref["count"])
    result["max_equal"] = got["max"].equals(ref["max"])
    result["mean_max_rel_diff"] = float(rel) if isinstance(rel, float) else 0.0
    result["ok"] = bool(
        result["count_equal"] and result["max_equal"] and result["mean_max_rel_diff"] <= 1e-9
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--clock", choices=("default", "fast"), required=True)
    ap.add_argument("--workers", type=int, default=1, help="worker threads in this process")
    ap.add_argument("--batch", type=int, default=1000, help="rows per input batch")
    ap.add_argument("--source", choices=("testing", "partitioned"), default="testing")
    ap.add_argument("--check", action="store_true", help="compare with Polars group_by_dynamic")
    args = ap.parse_args()
    if args.workers < 1 or args.batch < 1:
        ap.error("--workers and --batch must be >= 1")

    events, rows = load_rows(args.events)
    windows: list[tuple[str, tuple[int, Acc]]] = []
    late: list[tuple[str, tuple[int, Row]]] = []
    flow = build_flow(
        rows, clock=args.clock, source=args.source, batch=args.batch, windows=windows, late=late
    )
    seconds, cpu_seconds = run(flow, args.workers)

    got = windows_frame(windows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    got.write_parquet(args.out)
    record: dict[str, Any] = {
        "side": "bytewax",
        "clock": args.clock,
        "events": len(rows),
        "seconds": round(seconds, 3),
        "events_per_s": round(len(rows) / seconds, 1),
        "windows": got.height,
        "late": len(late),
        "bytewax": version("bytewax"),
        "cpu_seconds": round(cpu_seconds, 3),
        "source": args.source,
        "batch": args.batch,
        "workers": args.workers,
    }
    if args.check:
        record["check"] = check(events, got, [row for _, (_, row) in late])
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
