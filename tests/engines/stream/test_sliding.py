"""The incremental sliding operator equals the batch engine, whatever the batches and restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import polars as pl
import pytest
from _clicks import assert_same_rows
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.engines.compute.features import compute_view, view_input
from headrace.engines.stream import history, sliding
from headrace.engines.stream.operators import PARTITION, ViewOperator, make_operator
from headrace.engines.stream.sliding import SlidingOperator
from headrace.errors import StreamError

BASE = datetime(2026, 1, 1, tzinfo=UTC)
USER = hr.Entity("user", ["user"])
VIEW = hr.FeatureView(
    "recent",
    entity=USER,
    source="events",
    event_time="ts",
    ttl="1d",
    features=[
        hr.Aggregate("value", "mean", "10s"),
        hr.Aggregate("amount", "sum", "1m"),
        hr.Aggregate(None, "count", "30s", name="n_30s"),
        hr.Aggregate("value", "count", "1m", name="valued_1m"),
        hr.Aggregate("value", "max", "30s"),
        hr.Aggregate("amount", "min", "1m"),
        hr.Aggregate("kind", "last", "10s"),
        hr.Feature("big", pl.col("value").abs() > 1),
    ],
)


def _events(n: int, seed: int, users: int = 12) -> pl.DataFrame:
    """Events ~40 ms apart, out of order by up to 1 s, some values null, partition by user."""
    rng = np.random.default_rng(seed)
    ms = np.arange(n) * 40 + rng.integers(-1_000, 1_001, n)
    user = rng.integers(0, users, n)
    value = rng.normal(size=n).round(3)
    return pl.DataFrame(
        {
            "user": [f"u{u:02d}" for u in user],
            "ts": [BASE + timedelta(milliseconds=int(x)) for x in ms],
            "value": [None if v > 1.5 else float(v) for v in value],
            "amount": rng.integers(-50, 50, n),
            "kind": rng.choice(["a", "b", "c"], n).tolist(),
            PARTITION: (user % 3).astype(np.int32),
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def _stream(frame: pl.DataFrame, cuts: list[int], restarts: set[int]) -> pl.DataFrame:
    """Feed ``frame`` in slices at ``cuts``; before slice i in ``restarts``, the operator is
    rebuilt from what checkpoints saved (all rows taken so far, minus expired ones)."""
    rows = view_input(VIEW, frame.lazy(), what="test").collect()
    rows = rows.with_columns(frame[PARTITION])
    operator: SlidingOperator = SlidingOperator(VIEW)
    saved: dict[int, list[pl.DataFrame]] = {0: [], 1: [], 2: []}
    newest: datetime | None = None
    outputs = []
    bounds = [0, *sorted(set(cuts)), rows.height]
    for i, (lo, hi) in enumerate(pairwise(bounds)):
        if i in restarts:
            for partition, pieces in saved.items():
                pieces.append(operator.take_changes(partition)[0])
            again = SlidingOperator(VIEW)
            for partition, pieces in saved.items():
                kept = (
                    pl.concat([p for p in pieces if p.height])
                    if any(p.height for p in pieces)
                    else None
                )
                again.restore(partition, kept, operator.emitted.get(partition))
            operator = again
        chunk = rows.slice(lo, hi - lo)
        if not chunk.height:
            continue
        top = chunk["ts"].max()
        assert isinstance(top, datetime)
        newest = top if newest is None else max(newest, top)
        outputs.append(operator.advance(chunk, newest - timedelta(milliseconds=2_001), [0, 1, 2]))
        if i % 2:
            for partition, pieces in saved.items():
                pieces.append(operator.take_changes(partition)[0])
    outputs.append(operator.flush([0, 1, 2], datetime(2100, 1, 1, tzinfo=UTC)))
    return pl.concat([o for o in outputs if o.height])


def _batch(frame: pl.DataFrame) -> pl.DataFrame:
    return compute_view(VIEW, view_input(VIEW, frame.lazy(), what="test")).frame


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(1, 599), max_size=8),
    restarts=st.sets(st.integers(1, 8), max_size=3),
)
def test_any_batches_and_restarts_give_the_batch_rows(
    seed: int, cuts: list[int], restarts: set[int]
) -> None:
    frame = _events(600, seed)
    assert_same_rows(VIEW, _batch(frame), _stream(frame, cuts, restarts))


def test_the_two_column_search_gives_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids x time range too large for one integer: sorts and searches use two columns."""
    frame = _events(800, 5)
    monkeypatch.setattr(sliding, "_LIMIT", 0)
    monkeypatch.setattr(history, "_LIMIT", 0)
    assert_same_rows(VIEW, _batch(frame), _stream(frame, [100, 350, 351, 700], {2}))


def test_the_kept_history_stays_within_the_longest_window() -> None:
    frame = _events(6_000, 9)  # 4 minutes of events; windows of at most 1 minute
    _stream(frame, list(range(200, 6_000, 200)), set())
    operator = SlidingOperator(VIEW)
    rows = view_input(VIEW, frame.lazy(), what="test").collect().with_columns(frame[PARTITION])
    for chunk in rows.iter_slices(200):
        top = chunk["ts"].max()
        assert isinstance(top, datetime)
        operator.advance(chunk, top - timedelta(milliseconds=2_001), [0, 1, 2])
    kept = operator._history.frame()
    span_us = kept.select(pl.col("_hr_t").max() - pl.col("_hr_t").min()).item()
    assert span_us <= int(60e6) + 2_000_000 + 10_000_000  # a window + disorder + a segment


def test_views_with_other_functions_use_the_recomputing_operator() -> None:
    stddev = hr.FeatureView(
        "spread",
        entity=USER,
        source="events",
        event_time="ts",
        ttl="1d",
        features=[hr.Aggregate("value", "stddev", "1m")],
    )
    assert isinstance(make_operator(VIEW), SlidingOperator)
    assert isinstance(make_operator(stddev), ViewOperator)


def test_a_non_numeric_sum_names_the_view_and_the_fix() -> None:
    view = hr.FeatureView(
        "wrong",
        entity=USER,
        source="events",
        event_time="ts",
        ttl="1d",
        features=[hr.Aggregate("kind", "max", "1m")],
    )
    rows = _events(10, 1).select("user", "ts", "kind", PARTITION)
    with pytest.raises(StreamError, match=r"'wrong'.*max\(kind\).*cast the column"):
        SlidingOperator(view).advance(rows, None, [0])


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(st.integers(0, 5), max_size=30),
    values=st.lists(st.integers(-3, 3), min_size=30, max_size=30),
    floats=st.booleans(),
    maximum=st.booleans(),
)
def test_a_staircase_keeps_the_rows_no_later_row_beats_or_ties(
    ids: list[int], values: list[int], floats: bool, maximum: bool
) -> None:
    """The one-pass rank trick keeps exactly the rows a per-entity reversed scan keeps."""
    rows = pl.DataFrame(
        {"_hr_id": sorted(ids), "_hr_v": values[: len(ids)]},
        schema={"_hr_id": pl.Int64, "_hr_v": pl.Float64 if floats else pl.Int64},
    )
    expected = []
    for i, (entity, value) in enumerate(rows.iter_rows()):
        later = [v for e, v in rows.slice(i + 1).iter_rows() if e == entity]
        expected.append(all(value > v if maximum else value < v for v in later))
    assert sliding._undominated(rows, maximum=maximum).to_list() == expected


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300))
def test_one_ungrouped_rolling_pass_gives_what_the_grouped_one_gives(seed: int, n: int) -> None:
    """Windows over the ``id * gap + time`` index equal windows grouped by entity."""
    rng = np.random.default_rng(seed)
    frame = _events(n, seed, users=4).with_columns(
        pl.Series(
            "ts", [BASE + timedelta(seconds=int(s)) for s in rng.integers(0, 90, n)]
        ).dt.cast_time_unit("us"),  # whole seconds: many rows tied in time
        pl.col("value").cast(pl.Float64),
    )

    def rolled(limit: int) -> pl.DataFrame:
        operator = SlidingOperator(VIEW)
        operator._add_pending(frame)
        pending = operator.pending
        assert pending is not None
        operator._search = sliding._Search.over(operator, pending)
        sliding._LIMIT = limit
        try:
            return operator._rolled(operator._search.sort(pending, None))
        finally:
            sliding._LIMIT = 2**62

    ours, grouped = rolled(2**62), rolled(0)
    assert ours.columns == grouped.columns
    assert ours.to_dicts() == grouped.to_dicts()


def test_a_released_partition_restored_from_its_checkpoint_resumes_exactly() -> None:
    """Revoked past its checkpoint, then handed back: its rows since are read again."""
    frame = _events(600, 3)
    rows = view_input(VIEW, frame.lazy(), what="test").collect().with_columns(frame[PARTITION])
    operator = SlidingOperator(VIEW)
    outputs: list[pl.DataFrame] = []
    newest = BASE

    def feed(chunk: pl.DataFrame) -> pl.DataFrame:
        nonlocal newest
        top = chunk["ts"].max()
        assert isinstance(top, datetime)
        newest = max(newest, top)
        return operator.advance(chunk, newest - timedelta(milliseconds=2_001), [0, 1, 2])

    for lo in (0, 100, 200):
        outputs.append(feed(rows.slice(lo, 100)))
    saved = operator.take_changes(1)[0]  # partition 1's checkpoint
    bound = operator.emitted[1]
    moved_on = feed(rows.slice(300, 100))
    operator.release([1])  # its outputs since the checkpoint are dropped, not appended
    partition_1 = pl.col(PARTITION) == 1
    ones = rows.filter(partition_1)["user"].unique()
    outputs.append(moved_on.filter(~pl.col("user").is_in(ones.implode())))
    operator.restore(1, saved, bound)
    again = rows.slice(300).filter(partition_1 | (pl.int_range(pl.len()) >= 100))
    outputs.append(feed(again))
    outputs.append(operator.flush([0, 1, 2], datetime(2100, 1, 1, tzinfo=UTC)))
    assert_same_rows(VIEW, _batch(frame), pl.concat([o for o in outputs if o.height]))
