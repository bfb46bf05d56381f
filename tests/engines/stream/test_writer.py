"""The online-write thread: in order, bounded, batches queued together written as one."""

from __future__ import annotations

import threading

import polars as pl
import pytest

import headrace as hr
from headrace.engines.stream.runtime import _Writer

USER = hr.Entity("user", ["user"])


def _view(name: str) -> hr.FeatureView:
    return hr.FeatureView(
        name,
        entity=USER,
        source="events",
        event_time="ts",
        ttl="1d",
        features=[hr.Feature("x", pl.col("x"))],
    )


class _Sink:
    """Records writes; the first one waits until the test lets it go."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, list[int]]] = []
        self.started = threading.Event()
        self.go = threading.Event()

    def write(self, view: hr.FeatureView, rows: pl.DataFrame) -> None:
        self.started.set()
        assert self.go.wait(10)
        self.writes.append((view.name, rows["x"].to_list()))


def _rows(*values: int) -> pl.DataFrame:
    return pl.DataFrame({"user": ["ada"] * len(values), "x": list(values)})


def test_writes_queued_behind_a_slow_write_go_out_together_per_view_and_in_order() -> None:
    sink = _Sink()
    writer = _Writer(sink, depth=8)
    a, b = _view("a"), _view("b")
    writer.put(a, _rows(1))
    assert sink.started.wait(10)  # the thread holds the first write
    writer.put(a, _rows(2))
    writer.put(b, _rows(3))
    writer.put(a, _rows(4))
    done = writer.barrier()
    writer.put(a, _rows(5))
    sink.go.set()
    assert done.wait(10)
    writer.close()
    assert sink.writes[0] == ("a", [1])
    assert sorted(sink.writes[1:3]) == [("a", [2, 4]), ("b", [3])]  # one write per view
    assert sink.writes[3:] == [("a", [5])]  # after the barrier: not merged across it


def test_a_failed_write_is_raised_on_the_next_put_and_later_writes_are_skipped() -> None:
    class Failing:
        calls = 0

        def write(self, view: hr.FeatureView, rows: pl.DataFrame) -> None:
            Failing.calls += 1
            raise OSError("disk full")

    writer = _Writer(Failing())
    writer.put(_view("a"), _rows(1))
    writer.barrier().wait(10)
    with pytest.raises(OSError, match="disk full"):
        writer.put(_view("a"), _rows(2))
    writer.close()
    assert Failing.calls == 1
