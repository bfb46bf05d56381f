"""The HTML quality report: one self-contained page a person can open.

Per check: pass rate, failing row count, a few failing examples and a small chart of the
column's values (valid in grey, failing in red). Charts are inline SVG drawn here, so the page
needs no JavaScript and no network.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import jinja2
import polars as pl

from headrace.core.contract import Contract
from headrace.quality.validation import ROW_INDEX, ValidationResult, validate

__all__ = ["render_report"]

_BINS = 24
_WIDTH, _HEIGHT = 320, 90


@dataclass(frozen=True)
class _CheckView:
    rule: str
    kind: str
    level: str
    severity: str
    failed_rows: int
    pass_rate: float
    passed: bool
    observed: str
    description: str
    examples: list[dict[str, str]]
    chart: str


class ReportingValidator:
    """:func:`~headrace.quality.validation.validate` that also writes an HTML report per call.

    With ``folder`` None it only validates. Reports are ``<folder>/<name>.html``; rendering
    costs about 0.15 s per 300k rows (the charts).
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def __call__(
        self,
        data: pl.DataFrame,
        contract: Contract,
        *,
        lookups: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
        report: tuple[str, float] | None = None,
    ) -> ValidationResult:
        """Validate ``data``; write the report named by ``report=(name, gate)``."""
        result = validate(data, contract, lookups=lookups)
        if self.folder is not None and report is not None:
            name, gate = report
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{name.replace('/', '_')}.html"
            path.write_text(render_report(result, data, title=name, gate=gate), encoding="utf-8")
        return result


_CHART_ROWS = 200_000
"""Charts are drawn from at most this many rows, evenly spaced through the data."""


def render_report(
    result: ValidationResult,
    data: pl.DataFrame | pl.LazyFrame,
    *,
    title: str,
    gate: float = 0.9,
) -> str:
    """The report as an HTML string.

    ``data`` is the validated data (a lazy scan will do: the charts read an evenly spaced
    sample of it).
    """
    failures = result.failures
    # Charts show the shape of the data: an evenly spaced sample of it is enough, and keeps a
    # report of millions of rows fast.
    step = max(1, -(-result.rows // _CHART_ROWS))
    sample = data.lazy().with_row_index(ROW_INDEX).gather_every(step).collect(engine="streaming")
    views = []
    charts: dict[str, str] = {}  # per column, for the checks that fail no row
    for row in result.checks.iter_rows(named=True):
        column = row["columns"] if row["columns"] and "," not in row["columns"] else None
        failing = failures.filter(pl.col("rule") == row["rule"])
        examples = [
            {"row": str(r["row"]), "value": "∅" if r["value"] is None else str(r["value"])}
            for r in failing.head(5).iter_rows(named=True)
        ]
        chart = ""
        if column is not None and column in sample.columns:
            if failing.height:
                chart = _chart(sample, column, failing["row"])
            else:
                chart = charts.get(column) or _chart(sample, column, failing["row"])
                charts[column] = chart
        views.append(
            _CheckView(
                rule=row["rule"],
                kind=row["kind"],
                level=row["level"],
                severity=row["severity"],
                failed_rows=row["failed_rows"],
                pass_rate=row["pass_rate"],
                passed=row["passed"],
                observed=row["observed"] or "",
                description=row["description"],
                examples=examples,
                chart=chart,
            )
        )
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        resources.files("headrace.quality").joinpath("templates/report.html").read_text("utf-8")
    )
    return template.render(
        title=title,
        contract=result.contract,
        rows=result.rows,
        valid=result.valid_rows,
        quarantined=result.quarantined.height,
        score=result.score,
        gate=gate,
        passed=result.passes_gate(gate),
        checks=views,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _chart(sample: pl.DataFrame, column: str, failing_rows: pl.Series) -> str:
    """An inline SVG: a histogram (numbers, dates) or top values (anything else).

    ``sample`` holds rows with their ``_hr_row`` index; ``failing_rows`` the failing indexes.
    """
    frame = sample.select(ROW_INDEX, column)
    bad = (
        pl.col(ROW_INDEX).is_in(failing_rows.cast(pl.UInt32).implode())
        if failing_rows.len()
        else pl.lit(value=False)
    )
    frame = frame.with_columns(bad=bad).drop_nulls(column)
    if frame.height == 0:
        return ""
    dtype = frame.schema[column]
    if dtype.is_numeric() or dtype.is_temporal():
        values = frame.with_columns(pl.col(column).to_physical().cast(pl.Float64).alias("x"))
        lo, hi = values["x"].min(), values["x"].max()
        assert isinstance(lo, float)
        assert isinstance(hi, float)
        width = (hi - lo) / _BINS or 1.0
        binned = values.with_columns(
            b=((pl.col("x") - lo) / width).floor().clip(0, _BINS - 1).cast(pl.Int32)
        )
        counts = {(b, bad): n for b, bad, n in binned.group_by("b", "bad").len().iter_rows()}
        bars = [(counts.get((i, False), 0), counts.get((i, True), 0)) for i in range(_BINS)]
        labels = (_fmt(lo, dtype), _fmt(hi, dtype))
    else:
        top = (
            frame.group_by(pl.col(column).cast(pl.String), "bad")
            .len()
            .sort("len", descending=True)
            .head(12)
        )
        keys = list(dict.fromkeys(top[column].to_list()))[:12]
        tops = {(key, bad): n for key, bad, n in top.iter_rows()}
        bars = [(tops.get((k, False), 0), tops.get((k, True), 0)) for k in keys]
        labels = (keys[0] if keys else "", keys[-1] if keys else "")
    return _svg(bars, labels)


def _fmt(value: float, dtype: pl.DataType) -> str:
    if dtype.is_temporal():
        return str(pl.Series([value]).cast(pl.Int64).cast(dtype).item())
    return f"{value:,.4g}"


def _svg(bars: list[tuple[int, int]], labels: tuple[str, str]) -> str:
    top = max((ok + bad for ok, bad in bars), default=0) or 1
    step = _WIDTH / max(len(bars), 1)
    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT + 16}" viewBox="0 0 {_WIDTH} {_HEIGHT + 16}" '
        'xmlns="http://www.w3.org/2000/svg" role="img">'
    ]
    for i, (ok, bad) in enumerate(bars):
        x = i * step + 1
        ok_h = _HEIGHT * ok / top
        bad_h = _HEIGHT * bad / top
        parts.append(
            f'<rect x="{x:.1f}" y="{_HEIGHT - ok_h - bad_h:.1f}" width="{step - 2:.1f}" '
            f'height="{ok_h:.1f}" fill="#9aa5b1"><title>{ok:,} valid</title></rect>'
        )
        if bad:
            parts.append(
                f'<rect x="{x:.1f}" y="{_HEIGHT - bad_h:.1f}" width="{step - 2:.1f}" '
                f'height="{max(bad_h, 1.5):.1f}" fill="#d64545">'
                f"<title>{bad:,} failing</title></rect>"
            )
    left, right = (html.escape(str(label))[:24] for label in labels)
    parts.append(f'<text x="0" y="{_HEIGHT + 13}" font-size="10" fill="#52606d">{left}</text>')
    parts.append(
        f'<text x="{_WIDTH}" y="{_HEIGHT + 13}" font-size="10" fill="#52606d" '
        f'text-anchor="end">{right}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
