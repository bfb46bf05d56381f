"""Drift statistics agree with SciPy on the same samples (or bracket it, from sketches)."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from scipy import stats
from scipy.spatial.distance import jensenshannon

import headrace.quality.drift as drift
from headrace.quality.drift import DriftError, compare, sketch_frame
from headrace.quality.drift import measures as m
from headrace.quality.drift.binning import EdgeIndex

RNG_SEED = 20261126
SAMPLES = {
    "normal": lambda rng, n: rng.normal(10, 2, n),
    "lognormal": lambda rng, n: rng.lognormal(0, 1, n),
    "pareto": lambda rng, n: rng.pareto(3, n),
    "poisson": lambda rng, n: rng.poisson(4, n).astype(float),
    "uniform": lambda rng, n: rng.uniform(-1, 1, n),
}


def _pair(kind: str, n: int, shift: str, seed: int = RNG_SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref, cur = SAMPLES[kind](rng, n), SAMPLES[kind](rng, n)
    mean, std = ref.mean(), ref.std()
    if shift == "scale":
        cur = mean + 1.05 * (cur - mean)
    elif shift == "location":
        cur = cur + 0.05 * std
    return ref, cur


def _sketches(ref: np.ndarray, cur: np.ndarray) -> tuple[drift.NumericSketch, drift.NumericSketch]:
    reference = sketch_frame(pl.DataFrame({"x": ref}))
    current = sketch_frame(pl.DataFrame({"x": cur}), like=reference)
    a, b = reference["x"], current["x"]
    assert isinstance(a, drift.NumericSketch)
    assert isinstance(b, drift.NumericSketch)
    return a, b


def test_public_surface_is_all() -> None:
    public = {name for name in vars(drift) if not name.startswith("_")}
    modules = {"binning", "comparison", "measures", "report", "scan", "sketch"}
    assert public - modules == set(drift.__all__)


# -- exact path: up to 10,000 values a side the statistics are SciPy's ----------------------


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("sizes", [(300, 300), (2_000, 700), (10_000, 10_000)])
def test_small_samples_give_scipys_ks_and_wasserstein_exactly(
    kind: str, sizes: tuple[int, int]
) -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref, cur = SAMPLES[kind](rng, sizes[0]), SAMPLES[kind](rng, sizes[1]) * 1.02
    result = compare(sketch_frame(pl.DataFrame({"x": ref})), pl.DataFrame({"x": cur}))
    row = result.columns.row(0, named=True)
    expected = stats.ks_2samp(ref, cur)
    assert row["exact"]
    assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    distance = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert row["effect_size"] == pytest.approx(distance, rel=1e-9)


# -- binned path: brackets that hold, estimates close to SciPy -------------------------------


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("shift", ["none", "scale", "location"])
def test_binned_ks_brackets_scipys_statistic(kind: str, shift: str) -> None:
    ref, cur = _pair(kind, 60_000, shift)
    a, b = _sketches(ref, cur)
    found, upper = m.ks_binned(a.counts, b.counts, a.edges)
    exact = stats.ks_2samp(ref, cur)
    assert found.statistic <= exact.statistic + 1e-12
    assert exact.statistic <= upper + 1e-12
    # the bracket is one bin's mass wide for continuous data (512 quantile bins)
    if kind != "poisson":
        assert upper - found.statistic <= 2.5 / 512
    # the p-value is SciPy's asymptotic formula at the lower end of the bracket
    assert found.p_value == pytest.approx(m.ks_p_value(found.statistic, len(ref), len(cur)))


def test_atoms_get_their_own_bins_so_ks_sees_values_between_them() -> None:
    """Integers in the reference, the same integers + 0.1 now: binned KS must not miss it."""
    ref, cur = _pair("poisson", 60_000, "none")
    cur = cur + 0.1
    a, b = _sketches(ref, cur)
    found, upper = m.ks_binned(a.counts, b.counts, a.edges)
    exact = stats.ks_2samp(ref, cur).statistic
    assert found.statistic == pytest.approx(exact, abs=1e-12)
    assert upper == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("n", [12_000, 60_000, 400_000])
def test_ks_p_value_matches_scipys_asymptotic_p(n: int) -> None:
    for seed, shift in enumerate([0.0, 0.004, 0.008, 0.012, 0.02, 0.05]):
        rng = np.random.default_rng(seed)
        ref, cur = rng.normal(0, 1, n), rng.normal(shift, 1, n // 2)
        expected = stats.ks_2samp(ref, cur, method="asymp")
        if expected.pvalue < 1e-12:
            continue
        found = m.ks_p_value(expected.statistic, n, n // 2)
        en = n * (n // 2) / (n + n // 2)
        if en <= m.KSTWO_LIMIT:  # SciPy's own formula
            assert found == pytest.approx(expected.pvalue, rel=1e-9)
        else:  # Stephens' corrected limit: documented within 0.15 % above p = 1e-6
            assert found == pytest.approx(expected.pvalue, rel=1.5e-3 if found > 1e-6 else 7e-3)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("shift", ["none", "scale", "location"])
def test_binned_wasserstein_brackets_and_tracks_scipy(kind: str, shift: str) -> None:
    ref, cur = _pair(kind, 60_000, shift)
    a, b = _sketches(ref, cur)
    found = m.wasserstein_binned(
        a.edges, (a.counts, a.sums, a.min, a.max), (b.counts, b.sums, b.min, b.max)
    )
    exact = stats.wasserstein_distance(ref, cur)
    assert found.lower <= exact * (1 + 1e-9) + 1e-12
    assert exact <= found.upper * (1 + 1e-9) + 1e-12
    assert found.lower <= found.value <= found.upper
    # the estimate is within 0.2 % of a standard deviation of SciPy's value (a tenth of the
    # drift threshold; the worst case is a heavy tail, whose wide bins cross), and within
    # 2 % of it once there is a real shift
    assert abs(found.value - exact) / ref.std() < 2e-3
    if shift != "none":
        assert found.value == pytest.approx(exact, rel=0.02)


def test_wasserstein_is_exact_when_the_distributions_do_not_cross() -> None:
    ref, cur = _pair("uniform", 50_000, "none")
    a, b = _sketches(ref, cur + 0.5)  # the current CDF below the reference's in every bin
    found = m.wasserstein_binned(
        a.edges, (a.counts, a.sums, a.min, a.max), (b.counts, b.sums, b.min, b.max)
    )
    exact = stats.wasserstein_distance(ref, cur + 0.5)
    assert found.value == pytest.approx(exact, rel=1e-9)
    assert found.upper == pytest.approx(exact, rel=1e-9)


# -- categorical statistics ---------------------------------------------------------------


@given(
    st.lists(st.integers(0, 500), min_size=2, max_size=30),
    st.lists(st.integers(0, 500), min_size=2, max_size=30),
)
@settings(max_examples=80, deadline=None)
def test_chi_square_and_jensen_shannon_equal_scipy(ref: list[int], cur: list[int]) -> None:
    size = min(len(ref), len(cur))
    r, c = np.array(ref[:size]), np.array(cur[:size])
    if r.sum() == 0 or c.sum() == 0:
        return
    found = m.chi_square(r, c)
    table = np.vstack([r, c])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] >= 2:
        expected = stats.chi2_contingency(table, correction=False)
        assert found.statistic == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
        assert found.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)
    assert m.jensen_shannon(r, c) == pytest.approx(jensenshannon(r, c), abs=1e-7)


def test_compare_categorical_uses_all_categories_and_other() -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref = rng.choice(["a", "b", "c", "d"], 5_000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(["a", "b", "c", "e"], 4_000, p=[0.35, 0.3, 0.2, 0.15])  # d gone, e new
    result = compare(sketch_frame(pl.DataFrame({"k": ref})), pl.DataFrame({"k": cur}))
    row = result.columns.row(0, named=True)
    keys = ["a", "b", "c", "d", "e"]
    table = np.array([[np.sum(ref == k) for k in keys], [np.sum(cur == k) for k in keys]])
    expected = stats.chi2_contingency(table, correction=False)
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-9)
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert row["effect_size"] == pytest.approx(jensenshannon(table[0], table[1]), rel=1e-7)
    assert row["exact"]
    assert row["drifted"]


def test_psi() -> None:
    p, q = np.array([50, 30, 20]), np.array([40, 30, 30])
    sp, sq = p / p.sum(), q / q.sum()
    assert m.psi(p, q) == pytest.approx(float(((sq - sp) * np.log(sq / sp)).sum()))
    assert np.isfinite(m.psi([10, 0], [0, 10]))  # empty bins are floored, not infinite


def test_numeric_psi_and_js_use_reference_deciles() -> None:
    ref, cur = _pair("normal", 50_000, "location")
    a, b = _sketches(ref, cur)
    groups = m.decile_groups(a.counts)
    shares = m.regroup(a.counts, groups) / a.count
    assert np.allclose(shares, 0.1, atol=0.003)
    edges = np.quantile(ref, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    expected_ref = np.histogram(ref, edges)[0]
    expected_cur = np.histogram(cur, edges)[0]
    result = compare({"x": a}, {"x": b}, methods={"x": "psi"}).columns.row(0, named=True)
    assert result["effect_size"] == pytest.approx(m.psi(expected_ref, expected_cur), rel=0.05)
    result = compare({"x": a}, {"x": b}, methods={"x": "jensenshannon"}).columns.row(0, named=True)
    assert result["effect_size"] == pytest.approx(
        jensenshannon(expected_ref, expected_cur), rel=0.05
    )


# -- multiple testing ------------------------------------------------------------------------


@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
@settings(max_examples=80, deadline=None)
def test_benjamini_hochberg_equals_scipy(p_values: list[float]) -> None:
    expected = stats.false_discovery_control(np.array(p_values), method="bh")
    assert np.allclose(m.adjust_p_values(p_values, "bh"), expected, rtol=1e-12, atol=1e-15)


def test_holm() -> None:
    adjusted = m.adjust_p_values([0.01, 0.04, 0.03, 0.005], "holm")
    assert np.allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert m.adjust_p_values([0.2, 0.01], "none").tolist() == [0.2, 0.01]
    with pytest.raises(ValueError, match="unknown correction"):
        m.adjust_p_values([0.2], "bonferroni")  # type: ignore[arg-type]


# -- the bin lookup ------------------------------------------------------------------------


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
    st.lists(st.floats(-2e6, 2e6), min_size=1, max_size=300),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
@example(edges=[0.0, 2.2250738585e-313, 5e-324, -1.0], values=[0.0], log=False)  # subnormals
def test_edge_index_equals_searchsorted(edges: list[float], values: list[float], log: bool) -> None:
    grid = np.unique(np.array(edges))
    if log:
        grid = np.unique(np.sinh(grid / 1e5) * 1e3)
    points = np.array(values + grid.tolist() + np.nextafter(grid, -np.inf).tolist())
    expected = np.searchsorted(grid, points, side="right")
    assert np.array_equal(EdgeIndex(grid).bins(points), expected)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_edge_index_on_quantile_edges(kind: str) -> None:
    ref, cur = _pair(kind, 100_000, "scale")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 513)))
    assert np.array_equal(EdgeIndex(edges).bins(cur), np.searchsorted(edges, cur, side="right"))


# -- API errors ------------------------------------------------------------------------------


def test_compare_errors_name_the_column_and_the_fix() -> None:
    reference = sketch_frame(pl.DataFrame({"x": [1.0, 2.0, 3.0], "k": ["a", "b", "a"]}))
    with pytest.raises(DriftError, match="no reference sketch for column 'y'"):
        compare(reference, pl.DataFrame({"y": [1.0]}), columns=["y"])
    with pytest.raises(DriftError, match=r"no column 'k'.*columns="):
        compare(reference, pl.DataFrame({"x": [1.0]}))
    with pytest.raises(DriftError, match=r"'x' is categorical \(String\) here but numeric"):
        compare(reference, pl.DataFrame({"x": ["1"], "k": ["a"]}))
    with pytest.raises(DriftError, match="method 'wasserstein' does not fit categorical"):
        compare(reference, pl.DataFrame({"x": [1.0], "k": ["a"]}), methods={"k": "wasserstein"})
    with pytest.raises(DriftError, match="unknown correction"):
        compare(reference, pl.DataFrame({"x": [1.0], "k": ["a"]}), correction="x")  # type: ignore[arg-type]


def test_empty_side_has_no_statistics_and_no_drift() -> None:
    reference = sketch_frame(pl.DataFrame({"x": [1.0, 2.0, 3.0]}))
    result = compare(reference, pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Float64)}))
    row = result.columns.row(0, named=True)
    assert row["p_value"] is None
    assert row["effect_size"] is None
    assert row["drifted"] is False
    assert json.dumps(result.to_dict())


def test_result_round_trips_through_json() -> None:
    rng = np.random.default_rng(1)
    reference = sketch_frame(pl.DataFrame({"x": rng.normal(size=500), "k": ["a", "b"] * 250}))
    current = pl.DataFrame({"x": rng.normal(1, 1, size=400), "k": ["a"] * 300 + ["b"] * 100})
    result = compare(reference, current, correction="holm", drift_share=0.4)
    stored = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    back = drift.DriftResult.from_dict(stored)
    assert back.columns.equals(result.columns)
    assert (back.alpha, back.correction, back.drift_share) == (0.05, "holm", 0.4)
    assert back.drifted_columns == ["x", "k"]
    assert back.dataset_drift
    assert stored["share"] == 1.0
