"""Drift results as data, and the HTML drift report.

:class:`DriftResult` holds one row per compared column (:data:`RESULT_SCHEMA`) and the
settings that decided it; ``to_dict`` / ``from_dict`` store it beside a dataset version.
:func:`render_drift_report` draws one self-contained page (inline SVG, no JavaScript, no
network): per column the verdict, the effect size against its threshold, the test, and the
reference and current distributions overlaid.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
import numpy as np
import polars as pl

from headrace.quality.drift.sketch import (
    CategoricalSketch,
    ColumnSketch,
    NumericSketch,
    aligned_counts,
)

__all__ = ["RESULT_SCHEMA", "DriftResult", "render_drift_report"]

RESULT_SCHEMA = pl.Schema(
    {
        "column": pl.String(),
        "kind": pl.String(),
        "test": pl.String(),
        "statistic": pl.Float64(),
        "p_value": pl.Float64(),
        "p_value_adjusted": pl.Float64(),
        "effect": pl.String(),
        "effect_size": pl.Float64(),
        "threshold": pl.Float64(),
        "drifted": pl.Boolean(),
        "reference_count": pl.Int64(),
        "current_count": pl.Int64(),
        "exact": pl.Boolean(),
    }
)
"""One row per column: ``kind`` numeric or categorical; ``test`` ks or chisquare with its
``statistic`` and raw and adjusted p-values; ``effect`` (wasserstein: normalised by the
reference's standard deviation, jensenshannon, psi) with ``effect_size`` and ``threshold``;
the non-missing value counts; ``exact`` when the statistics are SciPy's on the full data
(not bracketed from bins, no category summed into ``other``)."""


@dataclass(frozen=True)
class DriftResult:
    """The outcome of :func:`~headrace.quality.drift.compare`: per-column rows and settings."""

    columns: pl.DataFrame
    """One row per compared column, :data:`RESULT_SCHEMA`."""
    alpha: float = 0.05
    correction: str = "bh"
    drift_share: float = 0.5

    @property
    def drifted_columns(self) -> list[str]:
        """The names of the drifted columns, in comparison order."""
        return self.columns.filter(pl.col("drifted")).get_column("column").to_list()

    @property
    def share(self) -> float:
        """The share of compared columns that drifted (0 when none were compared)."""
        return len(self.drifted_columns) / self.columns.height if self.columns.height else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Whether at least ``drift_share`` of the columns drifted."""
        return self.columns.height > 0 and self.share >= self.drift_share

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (settings, summary and rows) to store with the current version."""
        return {
            "alpha": self.alpha,
            "correction": self.correction,
            "drift_share": self.drift_share,
            "share": self.share,
            "dataset_drift": self.dataset_drift,
            "columns": self.columns.to_dicts(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """The result back from :meth:`to_dict`."""
        return cls(
            pl.DataFrame(list(data["columns"]), schema=RESULT_SCHEMA),
            alpha=float(data["alpha"]),
            correction=str(data["correction"]),
            drift_share=float(data["drift_share"]),
        )


_WIDTH, _HEIGHT = 340, 90
_DISPLAY_BINS = 30
_TOP_CATEGORIES = 12


@dataclass(frozen=True)
class _ColumnView:
    column: str
    kind: str
    drifted: bool
    effect: str
    effect_size: str
    threshold: str
    ratio: float
    test: str
    p_value: str
    p_value_adjusted: str
    counts: str
    exact: bool
    chart: str


def render_drift_report(
    result: DriftResult,
    reference_sketches: Mapping[str, ColumnSketch],
    current_sketches: Mapping[str, ColumnSketch],
    *,
    title: str = "drift",
) -> str:
    """The drift report as an HTML string.

    ``current_sketches`` are the current data's sketches made ``like=`` the reference
    (sketch the data once, then pass the sketches to both ``compare`` and this function).
    """
    views = []
    for row in result.columns.iter_rows(named=True):
        name = row["column"]
        ref, cur = reference_sketches.get(name), current_sketches.get(name)
        size, limit = row["effect_size"], row["threshold"]
        views.append(
            _ColumnView(
                column=name,
                kind=row["kind"],
                drifted=row["drifted"],
                effect=row["effect"],
                effect_size=_num(size),
                threshold=_num(limit),
                ratio=min(size / limit, 2.0) / 2.0 if size is not None and limit else 0.0,
                test=row["test"],
                p_value=_num(row["p_value"]),
                p_value_adjusted=_num(row["p_value_adjusted"]),
                counts=f"{row['reference_count']:,} / {row['current_count']:,}",
                exact=row["exact"],
                chart=_chart(ref, cur) if ref is not None and cur is not None else "",
            )
        )
    source = resources.files("headrace.quality.drift").joinpath("templates/drift.html")
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        source.read_text("utf-8")
    )
    return template.render(
        title=title,
        compared=result.columns.height,
        drifted=len(result.drifted_columns),
        share=result.share,
        dataset_drift=result.dataset_drift,
        alpha=result.alpha,
        correction=result.correction,
        drift_share=result.drift_share,
        columns=views,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value and abs(value) < 1e-3 else f"{value:.4f}"


def _chart(ref: ColumnSketch, cur: ColumnSketch) -> str:
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        if not ref.count or not cur.count or len(ref.edges) < 2:
            return ""
        return _numeric_chart(ref, cur)
    if isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
        return _categorical_chart(ref, cur)
    return ""


def _numeric_chart(ref: NumericSketch, cur: NumericSketch) -> str:
    """Shares per display bin, the fine bins regrouped into equal widths.

    The display range is the reference's 0.5 %-99.5 % range; the outer bins hold the tails.
    """
    shares = np.cumsum(ref.counts) / ref.count
    edges = ref.edges
    lo = float(edges[max(min(int(np.searchsorted(shares, 0.005)), len(edges)) - 1, 0)])
    hi = float(edges[min(int(np.searchsorted(shares, 0.995)), len(edges) - 1)])
    if hi <= lo:
        lo, hi = float(edges[0]), float(edges[-1])
    middles = np.concatenate([[edges[0]], (edges[:-1] + edges[1:]) / 2, [edges[-1]]])
    width = (hi - lo) / _DISPLAY_BINS
    slots = np.clip(np.floor((middles - lo) / width), 0, _DISPLAY_BINS - 1).astype(np.intp)
    ref_bars = np.bincount(slots, weights=ref.counts, minlength=_DISPLAY_BINS) / ref.count
    cur_bars = np.bincount(slots, weights=cur.counts, minlength=_DISPLAY_BINS) / cur.count
    labels = (f"{lo:,.4g}", f"{hi:,.4g}")
    return _svg(ref_bars.tolist(), cur_bars.tolist(), labels, [], outline=True)


def _categorical_chart(ref: CategoricalSketch, cur: CategoricalSketch) -> str:
    keys, ref_counts, cur_counts = aligned_counts(ref, cur)
    if not keys:
        return ""
    ref_shares = ref_counts / max(int(ref_counts.sum()), 1)
    cur_shares = cur_counts / max(int(cur_counts.sum()), 1)
    order = np.argsort(-np.maximum(ref_shares, cur_shares), kind="stable")
    shown = order[:_TOP_CATEGORIES]
    names = [keys[i] for i in shown]
    return _svg(
        ref_shares[shown].tolist(),
        cur_shares[shown].tolist(),
        (names[0], names[-1]),
        names,
        outline=False,
    )


def _svg(
    ref: list[float],
    cur: list[float],
    labels: tuple[str, str],
    names: list[str],
    *,
    outline: bool,
) -> str:
    """An inline SVG of two share vectors.

    Reference shares are grey bars; current shares a blue outline (numbers) or blue bars
    beside the grey ones (categories).
    """
    top = max([*ref, *cur, 1e-12])
    step = _WIDTH / max(len(ref), 1)
    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT + 16}" viewBox="0 0 {_WIDTH} {_HEIGHT + 16}" '
        'xmlns="http://www.w3.org/2000/svg" role="img">'
    ]
    path = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        x = i * step
        name = f"{html.escape(names[i])}: " if names else ""
        tip = f"<title>{name}reference {r:.2%}, current {c:.2%}</title>"
        r_h, c_h = _HEIGHT * r / top, _HEIGHT * c / top
        width = step - 1 if outline else step / 2 - 1
        parts.append(
            f'<rect x="{x + 0.5:.1f}" y="{_HEIGHT - r_h:.1f}" width="{max(width, 0.5):.1f}" '
            f'height="{r_h:.1f}" fill="#cbd2d9">{tip}</rect>'
        )
        if outline:
            path.append(f"{x:.1f},{_HEIGHT - c_h:.1f} {x + step:.1f},{_HEIGHT - c_h:.1f}")
        else:
            parts.append(
                f'<rect x="{x + step / 2:.1f}" y="{_HEIGHT - c_h:.1f}" '
                f'width="{max(width, 0.5):.1f}" height="{c_h:.1f}" fill="#2f6fdf">{tip}</rect>'
            )
    if path:
        points = " ".join(path)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="#2f6fdf" stroke-width="1.5"/>'
        )
    left, right = (html.escape(label)[:24] for label in labels)
    parts.append(f'<text x="0" y="{_HEIGHT + 13}" font-size="10" fill="#52606d">{left}</text>')
    parts.append(
        f'<text x="{_WIDTH}" y="{_HEIGHT + 13}" font-size="10" fill="#52606d" '
        f'text-anchor="end">{right}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
