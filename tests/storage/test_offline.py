"""The point-in-time join (``headrace.storage.offline``) against a brute-force reference.

The reference below is the module docstring of ``offline.py`` written as plain loops: for
each entity row and view, scan every feature row, keep those of the same key with event time
<= t (and, with ``created_cutoff``, created time <= t; a null created time means "recorded at
the event"), take the newest by (event time, created time with null lowest, position in the
data) and use it only if its event time is >= t - ttl.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal, assert_series_equal

from headrace.core.features import Entity, Feature, FeatureView
from headrace.errors import EntityRowsError
from headrace.storage.offline import JoinStats, ViewSlice, point_in_time_join

# New York switches to daylight saving time at 07:00 UTC on this day: the grid spans it.
BASE = datetime(2024, 3, 10, 4, tzinfo=UTC)
UNIT = timedelta(hours=1)
US = timedelta(microseconds=1)
UTC_US = pl.Datetime("us", "UTC")


def at(hours: int, micros: int = 0) -> datetime:
    """``hours`` on the grid after BASE, plus ``micros`` microseconds."""
    return BASE + hours * UNIT + micros * US


CARRIER = Entity("carrier", ["k"])
ROUTE = Entity("route", ["a", "b"])


def carrier_view(*, created: bool = True, ttl: timedelta = 3 * UNIT) -> FeatureView:
    return FeatureView(
        "carrier_stats",
        entity=CARRIER,
        source="flights",
        event_time="event",
        ttl=ttl,
        features=[Feature("x", pl.col("x")), Feature("s", pl.col("s"))],
        created_time="created" if created else None,
    )


def route_view(*, created: bool = False) -> FeatureView:
    return FeatureView(
        "route_stats",
        entity=ROUTE,
        source="flights",
        event_time="ts",
        ttl=2 * UNIT,
        features=[Feature("y", pl.col("y"))],
        created_time="recorded" if created else None,
    )


def view_slice(view: FeatureView, rows: Sequence[Sequence[Any]], size_bytes: int = 0) -> ViewSlice:
    """A slice over ``rows`` (keys, event/created time as aware UTC datetimes, features)."""
    schema: dict[str, pl.DataType] = {}
    for key in view.entity.keys:
        schema[key] = pl.String() if key == "b" else pl.Int64()
    schema[view.event_time] = UTC_US
    if view.created_time:
        schema[view.created_time] = UTC_US
    for name in view.feature_names:
        schema[name] = pl.String() if name == "s" else pl.Float64()
    data = pl.DataFrame(list(rows), schema=schema, orient="row").lazy()
    features = view.feature_names
    return ViewSlice(
        view=view,
        data=data,
        features=features,
        columns=tuple(f"{view.name}__{f}" for f in features),
        size_bytes=size_bytes,
    )


# -- the reference ---------------------------------------------------------------------------


def _reference_lookup(
    part: ViewSlice,
    data: Sequence[dict[str, Any]],
    row: dict[str, Any],
    t: datetime | None,
    created_cutoff: bool,
) -> list[Any]:
    view = part.view
    nothing: list[Any] = [None] * len(part.features)
    wanted = [row[k] for k in view.entity.keys]
    if t is None or any(k is None for k in wanted):
        return nothing
    best: dict[str, Any] | None = None
    best_rank: tuple[Any, ...] = ()
    for position, data_row in enumerate(data):
        if [data_row[k] for k in view.entity.keys] != wanted:
            continue
        event = data_row[view.event_time]
        if event is None or event > t:
            continue
        created = data_row[view.created_time] if view.created_time else None
        if created_cutoff and created is not None and created > t:
            continue
        # null created sorts lowest among rows of one event time
        rank = (event, created is not None, created or event, position)
        if best is None or rank > best_rank:
            best, best_rank = data_row, rank
    if best is None or best[view.event_time] < t - view.ttl_delta:
        return nothing
    return [best[f] for f in part.features]


def reference_join(
    entity_rows: pl.DataFrame,
    instants: Sequence[datetime | None],
    slices: Sequence[ViewSlice],
    *,
    created_cutoff: bool,
) -> pl.DataFrame:
    """The expected feature columns, one row per entity row (``instants``: each t in UTC)."""
    columns: dict[str, list[Any]] = {c: [] for s in slices for c in s.columns}
    data = [s.data.collect().to_dicts() for s in slices]  # each view's rows, in stored order
    for row, t in zip(entity_rows.to_dicts(), instants, strict=True):
        for part, rows in zip(slices, data, strict=True):
            values = _reference_lookup(part, rows, row, t, created_cutoff)
            for column, value in zip(part.columns, values, strict=True):
                columns[column].append(value)
    schema = {
        c: pl.String() if c.endswith("__s") else pl.Float64() for s in slices for c in s.columns
    }
    return pl.DataFrame(columns, schema=schema)


def check_join(
    entity_rows: pl.DataFrame,
    time_column: str,
    instants: Sequence[datetime | None],
    slices: Sequence[ViewSlice],
    *,
    created_cutoff: bool = False,
    memory_budget: int = 2 << 30,
) -> pl.DataFrame:
    """Run the join, compare it with the reference, return its output."""
    joined: tuple[pl.DataFrame, JoinStats] = point_in_time_join(
        entity_rows, time_column, slices, created_cutoff=created_cutoff, memory_budget=memory_budget
    )
    out, stats = joined
    expected = reference_join(entity_rows, instants, slices, created_cutoff=created_cutoff)
    # the entity rows come back untouched, in input order, one output row per input row
    assert_frame_equal(out.select(entity_rows.columns), entity_rows)
    assert out.columns == [*entity_rows.columns, *expected.columns]
    assert_frame_equal(out.select(expected.columns), expected)
    keys = list(dict.fromkeys(k for s in slices for k in s.view.entity.keys))
    unusable = sum(
        1
        for row, t in zip(entity_rows.to_dicts(), instants, strict=True)
        if t is None or any(row[k] is None for k in keys)
    )
    assert (stats.rows, stats.unusable_rows) == (entity_rows.height, unusable)
    return out


def zoned(instants: Sequence[datetime | None], zone: str, name: str = "t") -> pl.Series:
    """UTC instants as a time column: ``zone`` is a time zone, ``"naive"`` or ``"ns"``."""
    series = pl.Series(name, instants, dtype=UTC_US)
    if zone == "naive":
        return series.dt.replace_time_zone(None)  # wall-clock UTC
    if zone == "ns":
        return series.dt.cast_time_unit("ns").dt.convert_time_zone("Asia/Kolkata")
    return series.dt.convert_time_zone(zone)


# -- examples --------------------------------------------------------------------------------


def test_ttl_bounds_are_inclusive() -> None:
    part = view_slice(carrier_view(created=False), [(1, at(1), 10.0, "a")])
    cases = {
        at(1, -1): None,  # before the event
        at(1): "a",  # the event itself
        at(4): "a",  # exactly event + ttl
        at(4, 1): None,  # 1µs past the ttl
    }
    rows = pl.DataFrame({"k": [1] * len(cases), "t": pl.Series(list(cases), dtype=UTC_US)})
    out = check_join(rows, "t", list(cases), [part])
    assert out["carrier_stats__s"].to_list() == list(cases.values())


def test_no_history_and_unusable_rows_get_nulls() -> None:
    stored = [(1, at(0), 1.0, "a"), (None, at(0), 2.0, "null key"), (1, None, 3.0, "no time")]
    part = view_slice(carrier_view(created=False), stored)
    instants: list[datetime | None] = [at(1), at(1), at(1), None]
    rows = pl.DataFrame({"k": [1, 2, None, 1], "t": pl.Series(instants, dtype=UTC_US)})
    out = check_join(rows, "t", instants, [part])  # also checks the 2 unusable rows
    # a null entity key never matches a null key in the feature data
    assert out["carrier_stats__s"].to_list() == ["a", None, None, None]


def test_ties_newest_created_then_last_read() -> None:
    stored = [
        (1, at(1), at(3), 1.0, "late-recorded"),
        (1, at(1), None, 2.0, "no-created"),
        (1, at(1), at(2), 3.0, "first"),
        (1, at(1), at(2), 4.0, "second"),  # full tie with "first": the last read wins
        (1, at(0), at(9), 5.0, "older-event"),
    ]
    part = view_slice(carrier_view(), stored)
    instants = [at(1), at(2), at(2, -1), at(3)]
    entity = pl.DataFrame({"k": [1] * 4, "t": pl.Series(instants, dtype=UTC_US)})
    plain = check_join(entity, "t", instants, [part])
    assert plain["carrier_stats__s"].to_list() == ["late-recorded"] * 4
    cutoff = check_join(entity, "t", instants, [part], created_cutoff=True)
    assert cutoff["carrier_stats__s"].to_list() == [
        "no-created",
        "second",
        "no-created",
        "late-recorded",
    ]


def test_naive_times_are_utc_and_zoned_times_are_converted() -> None:
    part = view_slice(carrier_view(created=False), [(1, at(0), 1.0, "a"), (1, at(3), 2.0, "b")])
    instants: list[datetime | None] = [at(2, 999_999), at(3), at(6, 1)]
    expected = ["a", "b", None]
    for zone in ("naive", "America/New_York", "Asia/Kolkata", "ns"):
        entity = pl.DataFrame({"k": [1, 1, 1]}).with_columns(zoned(instants, zone))
        out = check_join(entity, "t", instants, [part])
        assert out["carrier_stats__s"].to_list() == expected, zone
        assert out["t"].dtype == entity["t"].dtype  # the caller's column, untouched
    naive = pl.DataFrame({"k": [1], "t": [datetime(2024, 3, 10, 7)]})  # 07:00 UTC, 03:00 EDT
    out, _ = point_in_time_join(naive, "t", [part])
    assert out["carrier_stats__s"].to_list() == ["b"]


def test_iso_strings_and_dates_are_times() -> None:
    part = view_slice(
        carrier_view(created=False, ttl=timedelta(days=2)),
        [(1, datetime(2024, 1, 1, 12, tzinfo=UTC), 1.0, "a")],
    )
    strings = pl.DataFrame(
        {"k": [1, 1, 1], "t": ["2024-01-01T11:59:59Z", "2024-01-01T07:00:00-05:00", None]}
    )
    out, stats = point_in_time_join(strings, "t", [part])
    assert out["carrier_stats__s"].to_list() == [None, "a", None]
    assert stats.unusable_rows == 1
    dates = pl.DataFrame({"k": [1, 1], "t": [date(2024, 1, 1), date(2024, 1, 2)]})
    out, _ = point_in_time_join(dates, "t", [part])
    assert out["carrier_stats__s"].to_list() == [None, "a"]  # midnight UTC


def test_entity_time_column_named_like_the_event_column() -> None:
    part = view_slice(carrier_view(), [(1, at(0), None, 1.0, "a"), (1, at(2), at(2), 2.0, "b")])
    instants: list[datetime | None] = [at(1), at(2), at(0, -1)]
    for name in ("event", "created"):
        entity = pl.DataFrame({"k": [1, 1, 1], name: pl.Series(instants, dtype=UTC_US)})
        for cutoff in (False, True):
            out = check_join(entity, name, instants, [part], created_cutoff=cutoff)
            assert out["carrier_stats__s"].to_list() == ["a", "b", None]


def test_a_feature_named_like_the_entity_time_column() -> None:
    view = FeatureView(
        "v",
        entity=CARRIER,
        source="flights",
        event_time="event",
        ttl="1d",
        features=[Feature("t", pl.col("x"))],
        created_time="created",
    )
    part = view_slice(view, [(1, at(0), None, 42.0)])
    instants: list[datetime | None] = [at(1), at(0, -1)]
    entity = pl.DataFrame({"k": [1, 1], "t": pl.Series(instants, dtype=UTC_US)})
    for cutoff in (False, True):
        out, _ = point_in_time_join(entity, "t", [part], created_cutoff=cutoff)
        assert out["v__t"].to_list() == [42.0, None]  # not the entity row's own time


def test_entity_keys_of_another_integer_type_are_cast() -> None:
    part = view_slice(carrier_view(created=False), [(1, at(0), 1.0, "a")])
    entity = pl.DataFrame(
        {"k": pl.Series([1, 2], dtype=pl.Int32), "t": pl.Series([at(1), at(1)], dtype=UTC_US)}
    )
    out, _ = point_in_time_join(entity, "t", [part])
    assert out["carrier_stats__s"].to_list() == ["a", None]
    assert out["k"].dtype == pl.Int32


def test_missing_columns_are_named() -> None:
    part = view_slice(route_view(), [])
    entity = pl.DataFrame({"a": [1], "t": [at(0)]})
    with pytest.raises(EntityRowsError, match=r"'when'.*timestamp="):
        point_in_time_join(entity, "when", [part])
    with pytest.raises(EntityRowsError, match=r"\['b'\].*'route'.*'route_stats'"):
        point_in_time_join(entity, "t", [part])


def test_buckets_follow_the_memory_budget() -> None:
    rows = [(k, at(h), at(h + k % 2), float(k), f"{k}-{h}") for k in range(20) for h in range(3)]
    entity = pl.DataFrame({"k": list(range(22)), "t": pl.Series([at(1)] * 22, dtype=UTC_US)})
    instants: list[datetime | None] = [at(1)] * 22
    whole = check_join(entity, "t", instants, [view_slice(carrier_view(), rows)])
    big = view_slice(carrier_view(), rows, size_bytes=10)
    _, stats = point_in_time_join(entity, "t", [big], memory_budget=3)
    assert stats.buckets == {"carrier_stats": 4}
    split = check_join(entity, "t", instants, [big], memory_budget=3)
    assert_frame_equal(split, whole)


# -- property test ---------------------------------------------------------------------------

# Few keys, a short grid of hours and rare nulls: most entity rows find history, event times
# tie often, and entity times fall exactly on (or 1µs around) event + ttl and created times.
carrier_keys = st.sampled_from([0, 1, 1, 1, None])
entity_keys = st.sampled_from([0, 1, 1, 1, 2, None])  # key 2 has no history
route_a = st.sampled_from([0, 0, 0, 1, None])
route_b = st.sampled_from(["x", "x", "x", "y", None])
offsets = st.sampled_from([-1, 0, 0, 0, 1])  # µs
values = st.sampled_from([1.0, 2.0, 3.0, -4.5, None])


@st.composite
def grid_time(draw: st.DrawFn, hours: int) -> datetime:
    return at(draw(st.integers(0, hours)), draw(offsets))


def maybe(times: st.SearchStrategy[datetime]) -> st.SearchStrategy[datetime | None]:
    return st.one_of(times, times, times, st.none())


def in_order(
    rows: list[tuple[Any, ...]], event: int, created: int | None, order: str
) -> list[tuple[Any, ...]]:
    """``rows`` as drawn, stably sorted by event time, or by event then created (null first)."""
    if order == "as drawn":
        return rows
    if order == "event" or created is None:
        return sorted(rows, key=lambda r: r[event])
    return sorted(rows, key=lambda r: (r[event], r[created] is not None, r[created] or r[event]))


@dataclass(frozen=True)
class Scenario:
    entity_rows: pl.DataFrame
    time_column: str
    instants: list[datetime | None]
    slices: list[ViewSlice]
    created_cutoff: bool


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    carrier = carrier_view(created=draw(st.booleans()))
    route = route_view(created=draw(st.booleans()))
    carrier_rows: list[tuple[Any, ...]] = []
    for i in range(draw(st.integers(0, 14))):
        row: list[Any] = [draw(carrier_keys), at(draw(st.integers(0, 4)))]
        if carrier.created_time:
            row.append(draw(maybe(grid_time(7))))
        carrier_rows.append((*row, draw(values), f"c{i}"))
    route_rows: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(0, 10))):
        row = [draw(route_a), draw(route_b), at(draw(st.integers(0, 4)))]
        if route.created_time:
            row.append(draw(maybe(grid_time(7))))
        route_rows.append((*row, draw(values)))
    columns: dict[str, list[Any]] = {"k": [], "a": [], "b": []}
    instants: list[datetime | None] = []
    for _ in range(draw(st.integers(1, 25))):
        # mostly the keys and event time of a stored row, plus 0-4 hours (ttl: 3h and 2h)
        times = [at(draw(st.integers(0, 7)), draw(offsets))]
        if draw(st.integers(0, 3)) and carrier_rows:
            stored = draw(st.sampled_from(carrier_rows))
            columns["k"].append(stored[0])
            times.append(stored[1])
        else:
            columns["k"].append(draw(entity_keys))
        if draw(st.integers(0, 3)) and route_rows:
            stored = draw(st.sampled_from(route_rows))
            columns["a"].append(stored[0])
            columns["b"].append(stored[1])
            times.append(stored[2])
        else:
            columns["a"].append(draw(route_a))
            columns["b"].append(draw(route_b))
        later = draw(st.sampled_from([0, 0, 1, 2, 3, 3, 4])) * UNIT + draw(offsets) * US
        instants.append(draw(st.sampled_from(times)) + later if draw(st.integers(0, 7)) else None)
    time_column = draw(st.sampled_from(["t", "event", "ts", "created"]))
    zone = draw(st.sampled_from(["UTC", "America/New_York", "naive", "ns"]))
    entity_rows = pl.DataFrame(
        {
            "k": pl.Series(columns["k"], dtype=pl.Int64),
            "a": pl.Series(columns["a"], dtype=pl.Int64),
            "b": pl.Series(columns["b"], dtype=pl.String),
            "label": range(len(instants)),
        }
    ).with_columns(zoned(instants, zone, time_column))
    # stored feature data is often already in (event, created) order; or only in event order
    order = draw(st.sampled_from(["as drawn", "event", "event and created"]))
    carrier_rows = in_order(carrier_rows, 1, 2 if carrier.created_time else None, order)
    route_rows = in_order(route_rows, 2, 3 if route.created_time else None, order)
    slices = [view_slice(carrier, carrier_rows), view_slice(route, route_rows)]
    if draw(st.booleans()):
        slices.reverse()
    return Scenario(entity_rows, time_column, instants, slices, draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_join_matches_the_reference(scenario: Scenario) -> None:
    whole = check_join(
        scenario.entity_rows,
        scenario.time_column,
        scenario.instants,
        scenario.slices,
        created_cutoff=scenario.created_cutoff,
    )
    # the same answer when each view is joined in 4 hash buckets of its keys
    big = [replace(s, size_bytes=10) for s in scenario.slices]
    split, stats = point_in_time_join(
        scenario.entity_rows,
        scenario.time_column,
        big,
        created_cutoff=scenario.created_cutoff,
        memory_budget=3,
    )
    assert set(stats.buckets.values()) == {4}
    assert_frame_equal(split, whole)


# -- scale -----------------------------------------------------------------------------------


@pytest.mark.parametrize("created_cutoff", [False, True])
def test_one_key_with_many_rows_is_a_merge_not_a_product(created_cutoff: bool) -> None:
    n = 200_000
    second = timedelta(seconds=1)
    data = pl.DataFrame(
        {
            "k": pl.Series([1] * n, dtype=pl.Int64),
            "event": pl.datetime_range(BASE, BASE + (n - 1) * second, "1s", eager=True),
            "x": pl.Series(range(n), dtype=pl.Float64),
        }
    ).with_columns(
        created=pl.col("event") + pl.duration(seconds=1),
        s=pl.lit("v"),
    )
    view = carrier_view(ttl=timedelta(seconds=10))
    part = ViewSlice(view, data.lazy(), ("x",), ("x",))
    picks = pl.Series("p", range(n)).shuffle(seed=7)
    entity = pl.DataFrame({"k": pl.repeat(1, n, eager=True), "p": picks}).with_columns(
        t=pl.lit(BASE) + pl.duration(milliseconds=pl.col("p") * 1000 + 500)
    )
    started = time.perf_counter()
    out, _ = point_in_time_join(entity, "t", [part], created_cutoff=created_cutoff)
    elapsed = time.perf_counter() - started
    # at p + 0.5 s the row of second p is the newest; with the cutoff it was only recorded
    # at p + 1 s, so the row of second p - 1 is the one that existed then
    shift = 1 if created_cutoff else 0
    expected = (picks - shift).cast(pl.Float64).alias("x")
    assert_series_equal(out["x"], pl.select(pl.when(expected >= 0).then(expected)).to_series())
    assert elapsed < 3.0, f"the join of 200k x 200k rows of one key took {elapsed:.1f}s"
