"""Compare current data with a reference's sketches: which columns drifted.

The decision rule (one per column)::

    drifted = effect_size >= threshold  and  p_value_adjusted < alpha

The *effect size* says whether the shift matters; the *test* guards against noise. At a
million rows a side a p-value alone flags shifts far too small to matter (any real difference,
or bad luck in 1 column out of 20 at alpha = 0.05), while a distance alone flags noise at a
few hundred rows; requiring both gives the size-dependent behaviour Evidently gets by switching
methods at 1,000 rows (the test decides at small sizes, the effect size at large ones) without
its blind spot: Evidently's Wasserstein threshold of 0.1 standard deviations misses 5 % scale
shifts.

Default measures by column kind (``methods=`` changes the effect measure per column):

============  =====================================  ==========  ======================
kind          effect size (default threshold)        test        exact (equal to SciPy)
============  =====================================  ==========  ======================
numeric       Wasserstein / reference std (0.02)     KS          both sides <= 10,000
                                                                 values; else brackets
categorical   Jensen-Shannon distance (0.025)        chi-square  unless a side has more
                                                                 than 1,000 categories
============  =====================================  ==========  ======================

``psi`` (threshold 0.1, the usual "moderate shift" mark; on numeric columns over the
reference's deciles) and ``jensenshannon`` on numeric columns (deciles too) are the
alternatives. Why these thresholds: a 5 % scale change (values moved 5 % away from the mean)
gives a normalised Wasserstein distance of 0.026 (Pareto, shape 3) to 0.043 (uniform), 0.038
for a normal; a location shift of 5 % of a standard deviation gives 0.05; noise between two
samples of one distribution is about 0.002 at 1 M rows a side, 0.005 at 100 k. A share moving
by 5 percentage points (30 % -> 35 %) gives a Jensen-Shannon distance of 0.035 to 0.07;
noise is 0.0005 * sqrt(categories - 1) at 1 M rows a side (0.016 for 1,000 categories).
PSI's conventional 0.1 misses such 5 % shifts (their PSI is about 0.01): choose it knowingly.

P-values are adjusted across the compared columns, Benjamini-Hochberg by default (``holm``
for the stricter family-wise control, ``none`` to turn it off). A column empty on either side
has no statistics and is never flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from headrace.quality.drift import measures
from headrace.quality.drift.measures import Correction
from headrace.quality.drift.report import RESULT_SCHEMA, DriftResult
from headrace.quality.drift.scan import sketch_frame
from headrace.quality.drift.sketch import (
    CategoricalSketch,
    ColumnSketch,
    DriftError,
    NumericSketch,
    aligned_counts,
)

__all__ = ["DEFAULT_METHODS", "THRESHOLDS", "compare"]

DEFAULT_METHODS = {"numeric": "wasserstein", "categorical": "jensenshannon"}
"""The effect measure of each column kind."""
THRESHOLDS = {"wasserstein": 0.02, "jensenshannon": 0.025, "psi": 0.1}
"""Default effect-size thresholds (see the module docstring for why)."""
_ALLOWED = {
    "numeric": {"wasserstein", "jensenshannon", "psi"},
    "categorical": {"jensenshannon", "psi"},
}
_TESTS = {"numeric": "ks", "categorical": "chisquare"}


def compare(
    reference: Mapping[str, ColumnSketch],
    current: pl.DataFrame | pl.LazyFrame | Mapping[str, ColumnSketch],
    *,
    columns: Sequence[str] | None = None,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    correction: Correction = "bh",
    drift_share: float = 0.5,
) -> DriftResult:
    """Compare ``current`` (data, or sketches made ``like=reference``) with the reference.

    Args:
        reference: the reference version's sketches (:func:`sketch_frame`).
        current: the current data (sketched here, like the reference), or its sketches.
        columns: the columns to compare (default: every column of ``reference``).
        methods: per column, the effect measure (``wasserstein``, ``jensenshannon``,
            ``psi``) instead of the kind's default.
        thresholds: per measure name, the effect size from which a column drifts.
        alpha: the significance level of the adjusted p-values.
        correction: ``bh`` (Benjamini-Hochberg), ``holm`` or ``none``.
        drift_share: the dataset drifts when at least this share of the columns do.

    Raises:
        DriftError: a column is not in the reference or the current data, has another kind
            on each side, or a method does not fit its column.

    """
    if correction not in measures.CORRECTIONS:
        msg = f"unknown correction {correction!r}: choose bh, holm or none"
        raise DriftError(msg)
    if not 0 < alpha <= 1:
        msg = f"alpha must be in (0, 1], not {alpha!r}"
        raise DriftError(msg)
    names = list(reference) if columns is None else list(columns)
    unknown = [name for name in names if name not in reference]
    if unknown:
        msg = (
            f"no reference sketch for column {', '.join(map(repr, unknown))}; "
            f"the reference has {', '.join(map(repr, reference)) or 'no columns'}"
        )
        raise DriftError(msg)
    base = {name: reference[name] for name in names}
    if isinstance(current, pl.DataFrame | pl.LazyFrame):
        schema = current.collect_schema()
        absent = [name for name in names if name not in schema]
        if absent:
            msg = (
                f"the current data has no column {', '.join(map(repr, absent))}; "
                "pass columns=[...] to compare the others"
            )
            raise DriftError(msg)
        sketches = sketch_frame(current, columns=names, like=base)
    else:
        absent = [name for name in names if name not in current]
        if absent:
            msg = f"no current sketch for column {', '.join(map(repr, absent))}"
            raise DriftError(msg)
        sketches = dict(current)
    limits = {**THRESHOLDS, **(thresholds or {})}
    chosen = dict(methods or {})
    rows = [_column(base[name], sketches[name], chosen.get(name), limits) for name in names]
    p_values = np.array([np.nan if r["p_value"] is None else r["p_value"] for r in rows])
    tested = ~np.isnan(p_values)
    adjusted = np.full(len(rows), np.nan)
    adjusted[tested] = measures.adjust_p_values(p_values[tested].tolist(), correction)
    for row, value in zip(rows, adjusted, strict=True):
        row["p_value_adjusted"] = None if math.isnan(value) else float(value)
        row["drifted"] = bool(
            row["effect_size"] is not None
            and row["effect_size"] >= row["threshold"]
            and value < alpha
        )
    frame = pl.DataFrame(rows, schema=RESULT_SCHEMA)
    return DriftResult(frame, alpha=alpha, correction=correction, drift_share=drift_share)


def _column(
    ref: ColumnSketch, cur: ColumnSketch, method: str | None, limits: Mapping[str, float]
) -> dict[str, Any]:
    effect = method or DEFAULT_METHODS[ref.kind]
    if effect not in _ALLOWED[ref.kind]:
        msg = (
            f"method {effect!r} does not fit {ref.kind} column {ref.name!r}: choose "
            f"{', '.join(sorted(_ALLOWED[ref.kind]))}"
        )
        raise DriftError(msg)
    if ref.kind != cur.kind:
        msg = f"column {ref.name!r} is {ref.kind} in the reference but {cur.kind} now"
        raise DriftError(msg)
    row: dict[str, Any] = {
        "column": ref.name,
        "kind": ref.kind,
        "test": _TESTS[ref.kind],
        "statistic": None,
        "p_value": None,
        "effect": effect,
        "effect_size": None,
        "threshold": float(limits[effect]),
        "reference_count": ref.count,
        "current_count": cur.count,
        "exact": False,
    }
    if not ref.count or not cur.count:
        return row
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        found = _numeric(ref, cur, effect)
    else:
        assert isinstance(ref, CategoricalSketch)
        assert isinstance(cur, CategoricalSketch)
        found = _categorical(ref, cur, effect)
    row["statistic"], row["p_value"], row["effect_size"], row["exact"] = found
    return row


def _numeric(
    ref: NumericSketch, cur: NumericSketch, effect: str
) -> tuple[float, float, float, bool]:
    if not np.array_equal(ref.edges, cur.edges):
        msg = (
            f"the current sketch of {ref.name!r} has other bins than the reference: "
            "sketch the current data like=the reference sketches"
        )
        raise DriftError(msg)
    exact = ref.values is not None and cur.values is not None
    if ref.values is not None and cur.values is not None:
        test = measures.ks_exact(ref.values, cur.values)
    else:
        test, _ = measures.ks_binned(ref.counts, cur.counts, ref.edges)
    if effect == "wasserstein":
        if ref.values is not None and cur.values is not None:
            distance = measures.wasserstein_exact(ref.values, cur.values)
        else:
            distance = measures.wasserstein_binned(
                ref.edges,
                (ref.counts, ref.sums, ref.min, ref.max),
                (cur.counts, cur.sums, cur.min, cur.max),
            ).value
        scale = ref.std or abs(ref.mean) or 1.0
        size = distance / scale
    else:
        groups = measures.decile_groups(ref.counts)
        pair = (measures.regroup(ref.counts, groups), measures.regroup(cur.counts, groups))
        size = measures.psi(*pair) if effect == "psi" else measures.jensen_shannon(*pair)
    return test.statistic, test.p_value, size, exact


def _categorical(
    ref: CategoricalSketch, cur: CategoricalSketch, effect: str
) -> tuple[float, float, float, bool]:
    _, ref_counts, cur_counts = aligned_counts(ref, cur)
    test = measures.chi_square(ref_counts, cur_counts)
    if effect == "psi":
        size = measures.psi(ref_counts, cur_counts)
    else:
        size = measures.jensen_shannon(ref_counts, cur_counts)
    return test.statistic, test.p_value, size, not ref.other and not cur.other
