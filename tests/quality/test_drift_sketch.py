"""Sketches: what they hold, merging (= the sketch of the union), storing."""

from __future__ import annotations

import json
import math

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings

from headrace.quality.drift import (
    CategoricalSketch,
    ColumnSketch,
    DriftError,
    NumericSketch,
    dump_sketches,
    load_sketches,
    merge_sketches,
    sketch_frame,
)


def _same(a: ColumnSketch, b: ColumnSketch) -> None:
    """Equal sketches: exact counts, keys, edges and values; moments and sums to rounding."""
    if isinstance(a, CategoricalSketch) or isinstance(b, CategoricalSketch):
        assert a.to_dict() == b.to_dict()
        return
    assert (a.name, a.dtype, a.count, a.missing, a.exact_limit) == (
        b.name,
        b.dtype,
        b.count,
        b.missing,
        b.exact_limit,
    )
    assert (a.min, a.max) == (b.min, b.max)
    assert math.isclose(a.mean, b.mean, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(a.m2, b.m2, rel_tol=1e-9, abs_tol=1e-3)
    assert np.array_equal(a.edges, b.edges)
    assert np.array_equal(a.counts, b.counts)
    assert np.allclose(a.sums, b.sums, rtol=1e-9, atol=1e-6)
    if a.values is None or b.values is None:
        assert a.values is None
        assert b.values is None
    else:
        assert np.array_equal(a.values, b.values)


floats = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3))
words = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])


@given(
    st.lists(st.one_of(floats, st.none(), st.just(math.nan)), min_size=1, max_size=200),
    st.integers(0, 200),
    st.integers(1, 300),
)
@settings(max_examples=120, deadline=None)
def test_numeric_merge_equals_the_sketch_of_the_union(
    values: list[float | None], cut: int, exact: int
) -> None:
    whole = pl.DataFrame({"x": pl.Series(values, dtype=pl.Float64)})
    first, second = whole.head(cut), whole.slice(cut)
    # partitions are sketched like the first one (same edges); so is the union
    base = sketch_frame(first, bins=16, exact_values=exact)
    parts = [base, sketch_frame(second, like=base, exact_values=exact)]
    union = sketch_frame(whole, like=base, exact_values=exact)
    _same(merge_sketches(*parts)["x"], union["x"])


@given(
    st.lists(st.one_of(words, st.none()), min_size=1, max_size=200),
    st.integers(0, 200),
    st.integers(3, 10),
)
@settings(max_examples=120, deadline=None)
def test_categorical_merge_equals_the_sketch_of_the_union(
    values: list[str | None], cut: int, limit: int
) -> None:
    whole = pl.DataFrame({"k": pl.Series(values, dtype=pl.String)})
    parts = [
        sketch_frame(whole.head(cut), max_categories=limit),
        sketch_frame(whole.slice(cut), max_categories=limit),
    ]
    merged = merge_sketches(*parts)["k"]
    union = sketch_frame(whole, max_categories=limit)["k"]
    assert isinstance(merged, CategoricalSketch)
    assert isinstance(union, CategoricalSketch)
    assert (merged.count, merged.missing) == (union.count, union.missing)
    if len(set(values) - {None}) <= limit:  # no value dropped into "other": exact
        _same(merged, union)
    else:  # heavy hitters: what is kept is counted exactly, totals always add up
        assert sum(merged.counts.values()) + merged.other == merged.count
        for key, n in merged.counts.items():
            assert n <= union.counts.get(key, union.other + n)


def test_merge_of_many_partitions_keeps_the_moments() -> None:
    rng = np.random.default_rng(3)
    data = rng.lognormal(2, 1, 50_000)
    frames = [pl.DataFrame({"x": part}) for part in np.array_split(data, 7)]
    base = sketch_frame(frames[0])
    merged = merge_sketches(base, *(sketch_frame(f, like=base) for f in frames[1:]))["x"]
    assert isinstance(merged, NumericSketch)
    assert merged.count == len(data)
    assert merged.mean == pytest.approx(data.mean(), rel=1e-12)
    assert merged.std == pytest.approx(data.std(), rel=1e-9)
    assert (merged.min, merged.max) == (data.min(), data.max())
    assert merged.values is None  # 50,000 > the exact limit
    assert merged.counts.sum() == len(data)


def test_merging_sketches_with_other_edges_is_refused() -> None:
    a = sketch_frame(pl.DataFrame({"x": [1.0, 2.0, 3.0]}))
    b = sketch_frame(pl.DataFrame({"x": [4.0, 5.0, 6.0]}))
    with pytest.raises(DriftError, match=r"bin edges differ.*like="):
        merge_sketches(a, b)


def test_numeric_sketch_contents() -> None:
    values = [1.0, 2.0, 2.0, None, math.nan, math.inf, 5.0]
    sketch = sketch_frame(pl.DataFrame({"x": values}))["x"]
    assert isinstance(sketch, NumericSketch)
    assert (sketch.count, sketch.missing) == (4, 3)  # null, NaN and inf are missing
    assert (sketch.min, sketch.max, sketch.mean) == (1.0, 5.0, 2.5)
    assert sketch.std == pytest.approx(np.std([1.0, 2.0, 2.0, 5.0]))
    assert sketch.values is not None
    assert sketch.values.tolist() == [1.0, 2.0, 2.0, 5.0]
    assert sketch.counts.sum() == 4
    assert sketch.sums.sum() == pytest.approx(10.0)


def test_quantile_edges_resolve_the_tails_and_atoms() -> None:
    rng = np.random.default_rng(4)
    data = np.concatenate([rng.pareto(2, 200_000), np.zeros(100_000)])  # an atom at 0
    sketch = sketch_frame(pl.DataFrame({"x": data}))["x"]
    assert isinstance(sketch, NumericSketch)
    shares = sketch.counts / sketch.count
    assert shares[1] == pytest.approx(1 / 3)  # the atom's own bin [0, nextafter(0))
    interior = shares[2:-1]
    assert interior.max() < 1.5 / 512  # every other bin at most about one 512th
    assert shares[-2] < 1e-4  # the top bins are split down to a few values
    assert len(sketch.edges) < 512 + 2 * 20 + 2


def test_categorical_sketch_keeps_the_most_frequent_values() -> None:
    frame = pl.DataFrame({"k": ["a"] * 5 + ["b"] * 3 + ["c", "d", None]})
    sketch = sketch_frame(frame, max_categories=2)["k"]
    assert isinstance(sketch, CategoricalSketch)
    assert sketch.counts == {"a": 5, "b": 3}
    assert (sketch.other, sketch.count, sketch.missing) == (2, 10, 1)


def test_current_is_sketched_like_the_reference() -> None:
    reference = sketch_frame(pl.DataFrame({"k": ["a", "b", "b"], "x": [1.0, 2.0, 3.0]}))
    current = sketch_frame(
        pl.DataFrame({"k": ["b", "z", "z"], "x": [9.0, 2.5, 0.0]}), like=reference
    )
    k, x = current["k"], current["x"]
    assert isinstance(k, CategoricalSketch)
    assert isinstance(x, NumericSketch)
    assert k.counts == {"b": 1, "a": 0, "z": 2}  # the reference's values first, new ones after
    assert np.array_equal(x.edges, reference["x"].edges)  # type: ignore[union-attr]
    # a truncated reference cannot tell a new value from one it summed into "other"
    truncated = sketch_frame(pl.DataFrame({"k": ["a", "a", "b"]}), max_categories=1)
    later = sketch_frame(pl.DataFrame({"k": ["a", "b", "z"]}), like=truncated)["k"]
    assert isinstance(later, CategoricalSketch)
    assert (later.counts, later.other) == ({"a": 1}, 2)


def test_types_and_columns() -> None:
    frame = pl.DataFrame(
        {
            "i": [1, 2, 3],
            "f32": pl.Series([1.5, 2.5, 3.5], dtype=pl.Float32),
            "b": [True, False, True],
            "e": pl.Series(["x", "y", "x"], dtype=pl.Enum(["x", "y"])),
            "c": pl.Series(["p", "q", "p"], dtype=pl.Categorical),
            "when": pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 3), eager=True),
        }
    )
    sketches = sketch_frame(frame.lazy())  # dates are skipped unless asked for
    assert {name: s.kind for name, s in sketches.items()} == {
        "i": "numeric",
        "f32": "numeric",
        "b": "categorical",
        "e": "categorical",
        "c": "categorical",
    }
    assert sketches["b"].counts == {"true": 2, "false": 1}  # type: ignore[union-attr]
    with pytest.raises(DriftError, match=r"'when' has type Date.*leave it out"):
        sketch_frame(frame, columns=["when"])
    with pytest.raises(DriftError, match="no column 'nope'"):
        sketch_frame(frame, columns=["nope"])
    with pytest.raises(DriftError, match=r"'i' is categorical .* but numeric"):
        sketch_frame(pl.DataFrame({"i": ["1"]}), like=sketches)


def test_dump_and_load_round_trip_exactly() -> None:
    rng = np.random.default_rng(5)
    frame = pl.DataFrame(
        {
            "x": rng.normal(size=30_000),
            "small": pl.Series(rng.normal(size=30_000)).head(100).extend_constant(None, 29_900),
            "k": rng.choice(["a", "b", "c"], 30_000),
        }
    )
    sketches = sketch_frame(frame)
    data = dump_sketches(sketches)
    loaded = load_sketches(data)
    assert list(loaded) == list(sketches)
    for name, sketch in sketches.items():
        assert loaded[name].to_dict() == sketch.to_dict()
        json.dumps(sketch.to_dict())  # JSON-able
    small = loaded["small"]
    assert isinstance(small, NumericSketch)
    assert small.values is not None
    assert len(small.values) == 100
    with pytest.raises(DriftError, match="corrupt"):
        load_sketches(b"not a sketch")


def test_twenty_column_sketches_are_small() -> None:
    rng = np.random.default_rng(6)
    n = 200_000
    frame = pl.DataFrame(
        {
            **{f"x{i}": rng.normal(size=n) for i in range(12)},
            **{f"k{i}": rng.choice([f"v{j}" for j in range(50)], n) for i in range(8)},
        }
    )
    size = len(dump_sketches(sketch_frame(frame)))
    assert size < 400_000  # about 17 kB per numeric column (zlib), under 1 kB per category set


def test_an_empty_column_sketches_and_stores_as_strict_json() -> None:
    sketch = sketch_frame(pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Float64)}))["x"]
    assert (sketch.count, sketch.missing) == (0, 2)
    json.dumps(sketch.to_dict(), allow_nan=False)
    assert load_sketches(dump_sketches({"x": sketch}))["x"].to_dict() == sketch.to_dict()
