"""Known, planted shifts: headrace flags exactly the shifted columns, at large and small sizes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from headrace.quality.drift import compare, render_drift_report, sketch_frame

SHIFTED = {
    "scale_normal",  # 5 % further from the mean
    "location_normal",  # + 5 % of a standard deviation
    "scale_lognormal",  # x 1.05
    "share_category",  # one category 30 % -> 35 %
    "share_bool",  # true 50 % -> 55 %
}


def planted(rows: int, seed: int, *, current: bool) -> pl.DataFrame:
    """16 columns: 11 drawn again from the same distribution, 5 shifted by about 5 %."""
    rng = np.random.default_rng(seed)
    k = 1.05 if current else 1.0
    five = np.array(["a", "b", "c", "d", "e"])
    share = [0.35, 0.25, 0.2, 0.12, 0.08] if current else [0.3, 0.27, 0.2, 0.14, 0.09]
    zipf = 1 / np.arange(1, 41)
    return pl.DataFrame(
        {
            "normal": rng.normal(50, 10, rows),
            "lognormal": rng.lognormal(3, 0.8, rows),
            "uniform": rng.uniform(0, 100, rows),
            "exponential": rng.exponential(5, rows),
            "poisson": rng.poisson(4, rows),
            "wide_int": rng.integers(0, 100_000, rows),
            "bimodal": np.where(
                rng.random(rows) < 0.3, rng.normal(-2, 0.5, rows), rng.normal(3, 1, rows)
            ),
            "pareto": rng.pareto(3, rows),
            "flag": rng.random(rows) < 0.3,
            "five": rng.choice(five, rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "zipf40": rng.choice([f"z{i}" for i in range(40)], rows, p=zipf / zipf.sum()),
            "scale_normal": 20 + k * (rng.normal(20, 4, rows) - 20),
            "location_normal": rng.normal(100, 15, rows) + (0.75 if current else 0.0),
            "scale_lognormal": k * rng.lognormal(1, 0.5, rows),
            "share_category": rng.choice(five, rows, p=np.array(share) / sum(share)),
            "share_bool": rng.random(rows) < (0.55 if current else 0.5),
        }
    )


def test_flags_exactly_the_planted_shifts() -> None:
    reference = sketch_frame(planted(250_000, 1, current=False))
    current = planted(250_000, 2, current=True)
    result = compare(reference, current)
    assert set(result.drifted_columns) == SHIFTED
    assert result.share == pytest.approx(5 / 16)
    assert not result.dataset_drift
    # the unshifted columns are far below the thresholds, the shifted ones clearly above
    rows = result.columns.with_columns(ratio=pl.col("effect_size") / pl.col("threshold"))
    calm = rows.filter(~pl.col("column").is_in(list(SHIFTED)))
    moved = rows.filter(pl.col("column").is_in(list(SHIFTED)))
    assert calm.get_column("ratio").max() < 0.5  # type: ignore[operator]
    assert moved.get_column("ratio").min() > 1.2  # type: ignore[operator]


def test_the_same_shifts_are_flagged_on_partitioned_sketches() -> None:
    """Reference sketched in 4 partitions and merged; the current sketched separately."""
    from headrace.quality.drift import merge_sketches

    parts = [planted(60_000, 10 + i, current=False) for i in range(4)]
    base = sketch_frame(parts[0])
    reference = merge_sketches(base, *(sketch_frame(p, like=base) for p in parts[1:]))
    current = sketch_frame(planted(240_000, 2, current=True), like=reference)
    assert set(compare(reference, current).drifted_columns) == SHIFTED


def test_a_negligible_shift_is_significant_but_not_drift() -> None:
    """1 M rows a side, moved by 1 % of a standard deviation: SciPy's KS rejects, we don't flag."""
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(0, 1, 1_000_000), rng.normal(0.01, 1, 1_000_000)
    assert stats.ks_2samp(ref, cur).pvalue < 0.05
    result = compare(sketch_frame(pl.DataFrame({"x": ref})), pl.DataFrame({"x": cur}))
    row = result.columns.row(0, named=True)
    assert row["p_value_adjusted"] < 0.05
    assert row["effect_size"] == pytest.approx(0.01, abs=0.003)
    assert not row["drifted"]


def test_tiny_samples_raise_no_false_alarms() -> None:
    """At 150 rows a side distances are noisy; the corrected test keeps them from flagging."""
    alarms = noisy = 0
    for seed in range(20):
        reference = sketch_frame(planted(150, 100 + seed, current=False))
        current = planted(150, 200 + seed, current=False)
        result = compare(reference, current)
        alarms += len(result.drifted_columns)
        # the distance alone (no test) would flag many of these unshifted columns
        noisy += len(compare(reference, current, alpha=1.0).drifted_columns)
    assert alarms <= 2  # 20 datasets x 16 unshifted columns; BH at 5 % allows about 1
    assert noisy > 100


def test_large_shifts_in_tiny_samples_are_flagged() -> None:
    rng = np.random.default_rng(9)
    reference = pl.DataFrame(
        {"x": rng.normal(0, 1, 300), "k": rng.choice(["a", "b"], 300, p=[0.3, 0.7])}
    )
    current = pl.DataFrame(
        {"x": rng.normal(0.5, 1, 300), "k": rng.choice(["a", "b"], 300, p=[0.6, 0.4])}
    )
    result = compare(sketch_frame(reference), current)
    assert result.drifted_columns == ["x", "k"]
    assert result.dataset_drift
    assert result.columns.get_column("exact").all()


def test_report_shows_every_column_and_marks_the_drifted(tmp_path: object) -> None:
    reference = sketch_frame(planted(20_000, 1, current=False))
    current = sketch_frame(planted(20_000, 2, current=True), like=reference)
    result = compare(reference, current)
    page = render_drift_report(result, reference, current, title="orders v3 vs v7")
    assert page.startswith("<!doctype html>")
    assert "orders v3 vs v7" in page
    assert page.count("<svg") == 16
    assert page.count("✘ drift") == len(result.drifted_columns)
    for name in reference:
        assert f"<code>{name}</code>" in page
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
