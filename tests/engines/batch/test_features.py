"""Computing a feature view over history (``compute_view``) against a brute-force reference.

The reference is the window semantics of ``headrace.core.features`` written as loops: for a
row at event time ``t``, an aggregation over window ``w`` covers the rows of the same entity
with event time in ``(t - w, t]`` (rows sharing ``t`` included, wherever they are in the
input), skipping null values.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal

from headrace.core.features import (
    AGGREGATIONS,
    Aggregate,
    AggregationName,
    Entity,
    Feature,
    FeatureView,
)
from headrace.engines.compute.features import compute_view, view_input
from headrace.errors import FeatureDefinitionError

BASE = datetime(2024, 3, 10, 4, tzinfo=UTC)  # New York enters DST at 07:00 UTC this day
STEP = timedelta(minutes=30)
US = timedelta(microseconds=1)
UTC_US = pl.Datetime("us", "UTC")
LONG, SHORT = timedelta(hours=2), timedelta(minutes=30)
FUNCTIONS: tuple[AggregationName, ...] = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "last",
    "stddev",
    "distinct_count",
)
SHORT_FUNCTIONS: tuple[AggregationName, ...] = ("sum", "last", "stddev")


def at(steps: int, micros: int = 0) -> datetime:
    return BASE + steps * STEP + micros * US


def make_view(keys: Sequence[str] = ("k",), *, created: bool = False) -> FeatureView:
    """Every aggregation of ``v`` over 2h, a few over 30m, a row count, and the row id."""
    features: list[Aggregate | Feature] = [Aggregate("v", f, LONG) for f in FUNCTIONS]
    features += [Aggregate("v", f, SHORT) for f in SHORT_FUNCTIONS]
    features += [Aggregate(None, "count", LONG), Feature("rid", pl.col("rid"))]
    return FeatureView(
        "stats",
        entity=Entity("thing", list(keys)),
        source="events",
        event_time="t",
        ttl="1d",
        features=features,
        created_time="created" if created else None,
    )


def compute(
    view: FeatureView, source: pl.DataFrame, emit_from: datetime | None = None
) -> tuple[pl.DataFrame, int]:
    computed = compute_view(view, view_input(view, source.lazy(), what="test"), emit_from=emit_from)
    return computed.frame, computed.dropped


# -- the reference ---------------------------------------------------------------------------


def aggregate(function: str, values: list[Any]) -> Any:
    """``function`` over the window's values (oldest first), nulls skipped."""
    present = [v for v in values if v is not None]
    if function == "count":
        return len(present)
    if function == "sum":
        return sum(present)
    if function == "distinct_count":
        return len(set(present))
    if not present:
        return None
    if function == "stddev":
        return statistics.stdev(present) if len(present) > 1 else None
    if function == "mean":
        return math.fsum(present) / len(present)
    if function == "min":
        return min(present)
    if function == "max":
        return max(present)
    assert function == "last"
    return present[-1]


def _oldest_first(view: FeatureView, row: dict[str, Any]) -> tuple[Any, ...]:
    """Event time, then created time (null lowest), then input order."""
    created = row[view.created_time] if view.created_time else None
    return (row["t"], created is not None, created or row["t"], row["rid"])


def reference(view: FeatureView, rows: Sequence[dict[str, Any]]) -> tuple[dict[int, Any], int]:
    """Expected output row per ``rid`` (times given as UTC instants), and the dropped count."""
    keys = view.entity.keys
    by_key: defaultdict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    dropped = 0
    for row in rows:
        if row["t"] is None or any(row[k] is None for k in keys):
            dropped += 1
        else:
            by_key[tuple(row[k] for k in keys)].append(row)
    expected: dict[int, Any] = {}
    for history in by_key.values():
        # oldest first: event time, then created time (null lowest), then input order
        history.sort(key=lambda r: _oldest_first(view, r))
        created = view.created_time
        for row in history:
            out = {c: row[c] for c in (*keys, "t", *([created] if created else []), "rid")}
            for agg in view.aggregates:
                window = [r for r in history if row["t"] - agg.period < r["t"] <= row["t"]]
                column = agg.column
                values = [r[column] if column else 1 for r in window]
                out[agg.name] = aggregate(agg.function, values)
            expected[row["rid"]] = out
    return expected, dropped


def close(actual: Any, wanted: Any) -> bool:
    """Equal; floats within a relative 1e-9 (the reference sums in another order)."""
    if isinstance(wanted, float) or isinstance(actual, float):
        numbers = (int, float)
        if not (isinstance(actual, numbers) and isinstance(wanted, numbers)):
            return False
        return math.isclose(actual, wanted, rel_tol=1e-9, abs_tol=1e-12)
    return bool(actual == wanted)


def check(
    view: FeatureView,
    source: pl.DataFrame,
    instants: Sequence[datetime | None],
    emit_from: datetime | None = None,
) -> pl.DataFrame:
    """Compute ``view`` over ``source`` and compare it with the reference; return the frame."""
    frame, dropped = compute(view, source, emit_from)
    rows = [{**r, "t": t} for r, t in zip(source.to_dicts(), instants, strict=True)]
    expected, expected_dropped = reference(view, rows)
    if emit_from is not None:
        expected = {rid: e for rid, e in expected.items() if e["t"] >= emit_from}
    assert dropped == expected_dropped
    created = [view.created_time] if view.created_time else []
    assert frame.columns == [*view.entity.keys, "t", *created, *view.feature_names]
    assert frame.schema["t"] == UTC_US
    for agg in view.aggregates:
        if agg.function in {"count", "distinct_count"}:
            assert frame.schema[agg.name] == pl.Int64, agg.name
    got = {r["rid"]: r for r in frame.to_dicts()}
    assert len(got) == frame.height, "one output row per source row"
    assert got.keys() == expected.keys()
    for rid, want in expected.items():
        mismatched = {c: (got[rid][c], v) for c, v in want.items() if not close(got[rid][c], v)}
        assert not mismatched, f"row {rid}: (computed, expected) {mismatched}"
    return frame


def source_frame(
    rows: Sequence[Sequence[Any]], instants: Sequence[datetime | None], zone: str = "UTC"
) -> pl.DataFrame:
    """Rows of (k, v[, created]) with event times ``instants`` given in ``zone``."""
    times = pl.Series("t", instants, dtype=UTC_US)
    if zone == "naive":
        times = times.dt.replace_time_zone(None)  # wall-clock UTC
    elif zone == "ns":
        times = times.dt.cast_time_unit("ns").dt.convert_time_zone("Asia/Kolkata")
    else:
        times = times.dt.convert_time_zone(zone)
    has_created = bool(rows) and len(rows[0]) == 3
    schema = {"k": pl.Int64(), "v": pl.Float64()} | ({"created": UTC_US} if has_created else {})
    frame = pl.DataFrame(list(rows), schema=schema, orient="row")
    return frame.with_columns(times, rid=pl.int_range(pl.len()))


# -- examples --------------------------------------------------------------------------------


def test_every_aggregation_on_a_small_history() -> None:
    assert sorted(FUNCTIONS) == sorted(AGGREGATIONS)  # the reference covers them all
    view = make_view()
    instants: list[datetime | None] = [at(0), at(1), at(2), at(2), at(4), at(4, 1)]
    source = source_frame([(1, 1.0), (1, 3.0), (1, None), (1, 2.0), (1, 3.0), (1, 5.0)], instants)
    frame = check(view, source, instants)
    by_rid = {r["rid"]: r for r in frame.to_dicts()}
    # at(2): rows at(0..2) are in (t-2h, t]: 1, 3, null, 2 (both rows at(2) see each other)
    for rid in (2, 3):
        assert by_rid[rid]["v_sum_2h"] == 6.0
        assert by_rid[rid]["v_count_2h"] == 3
        assert by_rid[rid]["count_2h"] == 4
        assert by_rid[rid]["v_last_2h"] == 2.0
        assert by_rid[rid]["v_last_30m"] == 2.0  # the null at(2) is skipped
        assert by_rid[rid]["v_stddev_30m"] is None  # one value
    # at(4): at(0) is exactly 2h old, so out; at(4, 1) is not yet in: 3, null, 2, 3
    assert by_rid[4]["v_sum_2h"] == 8.0
    assert by_rid[4]["v_distinct_count_2h"] == 2
    assert by_rid[4]["v_min_2h"] == 2.0
    # at(4, 1): 30 minutes back reaches at(3) + 1µs: 3 and 5
    assert by_rid[5]["v_sum_30m"] == 8.0
    assert by_rid[5]["v_mean_2h"] == pytest.approx(13 / 4)
    assert by_rid[5]["v_stddev_30m"] == pytest.approx(math.sqrt(2))


def test_ties_see_rows_after_them_in_the_input() -> None:
    view = make_view()
    instants: list[datetime | None] = [at(1), at(1), at(0), at(1)]
    source = source_frame([(1, 1.0), (1, 2.0), (1, 10.0), (1, 4.0)], instants)
    frame = check(view, source, instants)
    tied = frame.filter(pl.col("t") == at(1))
    assert tied["v_sum_2h"].to_list() == [17.0] * 3
    assert tied["v_last_2h"].to_list() == [4.0] * 3  # the last read among the tied rows


def test_last_orders_ties_by_created_time() -> None:
    view = make_view(created=True)
    instants: list[datetime | None] = [at(1)] * 4
    rows = [(1, 1.0, at(3)), (1, 2.0, None), (1, 3.0, at(2)), (1, 4.0, at(2))]
    frame = check(view, source_frame(rows, instants), instants)
    assert frame["v_last_2h"].to_list() == [1.0] * 4  # the newest created time wins


def test_only_nulls() -> None:
    view = make_view()
    instants: list[datetime | None] = [at(0), at(1)]
    frame = check(view, source_frame([(1, None), (1, None)], instants), instants)
    row = frame.row(1, named=True)
    assert (row["v_sum_2h"], row["v_count_2h"], row["count_2h"]) == (0.0, 0, 2)
    assert row["v_distinct_count_2h"] == 0
    for f in ("mean", "min", "max", "last", "stddev"):
        assert row[f"v_{f}_2h"] is None, f


def test_integer_values_keep_integer_sums() -> None:
    view = make_view()
    instants: list[datetime | None] = [at(0), at(1), at(1)]
    source = source_frame([(1, None), (1, None), (1, None)], instants).with_columns(
        v=pl.Series([4, None, 7], dtype=pl.Int64)
    )
    frame = check(view, source, instants)
    assert frame.schema["v_sum_2h"] == pl.Int64
    assert frame["v_sum_2h"].to_list() == [4, 11, 11]
    assert frame["v_mean_2h"].to_list() == [4.0, 5.5, 5.5]


def test_rows_without_key_or_time_are_dropped_and_counted() -> None:
    view = make_view()
    instants: list[datetime | None] = [at(0), None, at(1), at(1)]
    source = source_frame([(1, 1.0), (1, 2.0), (None, 4.0), (1, 8.0)], instants)
    frame = check(view, source, instants)
    assert frame["rid"].to_list() == [0, 3]
    assert frame["v_sum_2h"].to_list() == [1.0, 9.0]


def test_unsorted_input_with_many_entities() -> None:
    view = make_view(("k", "g"), created=True)
    n = 6000
    shuffled = pl.DataFrame(
        {
            "k": pl.int_range(n, eager=True) % 1500,
            "g": (pl.int_range(n, eager=True) % 2).cast(pl.String),
            "step": (pl.int_range(n, eager=True) * 7919) % 11,
            "v": (pl.int_range(n, eager=True) % 13).cast(pl.Float64),
        }
    ).sample(fraction=1.0, shuffle=True, seed=3)
    source = shuffled.select(
        "k",
        "g",
        "v",
        t=pl.lit(BASE) + pl.col("step") * STEP,
        created=pl.when(pl.col("v") > 3).then(pl.lit(BASE) + pl.col("v") * STEP),
        rid=pl.int_range(pl.len()),
    )
    frame = check(view, source, source["t"].to_list())
    assert frame.height == n


def test_times_in_another_zone_or_naive_are_utc() -> None:
    view = make_view()
    instants: list[datetime | None] = [at(4), at(5), at(6), at(9)]  # across the DST switch
    rows = [(1, 1.0), (1, 2.0), (1, 4.0), (1, 8.0)]
    frames = [
        check(view, source_frame(rows, instants, zone), instants)
        for zone in ("UTC", "America/New_York", "naive", "ns")
    ]
    for frame in frames[1:]:
        assert_frame_equal(frame, frames[0])
    assert frames[0]["t"].to_list() == instants
    assert frames[0]["v_sum_2h"].to_list() == [1.0, 3.0, 7.0, 12.0]


def test_created_times_are_utc_and_dates_are_midnight() -> None:
    view = make_view(created=True)
    instants: list[datetime | None] = [
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 2, tzinfo=UTC),
    ]
    created = pl.Series([at(1), None], dtype=UTC_US).dt.convert_time_zone("America/New_York")
    source = source_frame([(1, 1.0), (1, 2.0)], instants).with_columns(
        t=pl.Series([date(2024, 1, 1), date(2024, 1, 2)]), created=created
    )
    frame = check(view, source, instants)
    assert frame.schema["created"] == UTC_US
    assert frame["created"].to_list() == [at(1), None]


def test_emit_from_returns_the_rows_of_a_full_compute() -> None:
    view = make_view()
    instants: list[datetime | None] = [at(i // 2) for i in range(12)]
    source = source_frame([(i % 2, float(i)) for i in range(12)], instants)
    full, _ = compute(view, source)
    start = at(3)
    history = source.filter(pl.col("t") >= start - view.max_window)
    emitted = check(view, history, history["t"].to_list(), emit_from=start)
    assert emitted.height > 0
    assert_frame_equal(emitted, full.filter(pl.col("t") >= start))


def test_source_without_the_event_time_column() -> None:
    view = make_view()
    source = pl.LazyFrame({"k": [1], "v": [1.0], "rid": [0], "when": [BASE]})
    with pytest.raises(FeatureDefinitionError, match=r"'stats'.*event-time column 't'"):
        view_input(view, source, what="source 'events'")


# -- property test ---------------------------------------------------------------------------

offsets = st.sampled_from([-1, 0, 0, 0, 1])  # µs around the 30-minute grid: window bounds
values = st.sampled_from([1.0, 2.0, 2.0, -3.5, 0.25, 1e6, None])
zones = st.sampled_from(["UTC", "America/New_York", "naive", "ns"])


@st.composite
def grid_time(draw: st.DrawFn) -> datetime:
    return at(draw(st.integers(0, 10)), draw(offsets))


@dataclass(frozen=True)
class History:
    view: FeatureView
    source: pl.DataFrame
    instants: list[datetime | None]
    emit_from: datetime


@st.composite
def histories(draw: st.DrawFn) -> History:
    view = make_view(("k", "g"), created=draw(st.booleans()))
    n = draw(st.integers(0, 30))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n))

    instants = column(st.one_of(grid_time(), grid_time(), grid_time(), st.none()))
    rows = zip(column(st.sampled_from([0, 1, 1, None])), column(values), strict=True)
    source = source_frame(list(rows), instants, draw(zones)).with_columns(
        g=pl.Series(column(st.sampled_from(["a", "a", "b"])), dtype=pl.String)
    )
    if view.created_time:
        created = column(st.one_of(grid_time(), st.none()))
        source = source.with_columns(created=pl.Series(created, dtype=UTC_US))
    return History(view, source, instants, at(draw(st.integers(0, 10)), draw(offsets)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_compute_view_matches_the_reference(case: History) -> None:
    full = check(case.view, case.source, case.instants)
    start = case.emit_from
    # what the batch engine reads for an incremental run: the history back to start - window
    needed = [t is not None and t >= start - case.view.max_window for t in case.instants]
    history = case.source.filter(pl.Series(needed, dtype=pl.Boolean))
    emitted, _ = compute(case.view, history, emit_from=start)
    assert_frame_equal(emitted, full.filter(pl.col("t") >= start))
