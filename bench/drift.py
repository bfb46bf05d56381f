"""Drift detection: headrace vs SciPy called per column vs Evidently's DataDriftPreset.

    .venv/bin/python bench/drift.py                    # 1 M vs 1 M rows x 20 columns, all sides
    .venv/bin/python bench/drift.py --sides headrace,scipy
    .venv/bin/python bench/drift.py --smoke            # CI: headrace only, 200 k rows

Data (``drift_data.py``, seeded, written once under ``bench/data/drift_<rows>/``): 12 numeric
and 8 categorical columns; 5 of them shifted by about 5 % in the current data (scale, location,
a category's share), 15 drawn again from the same distribution.

Sides, each in a fresh interpreter that reads both Parquet files first (not timed):

- ``headrace``: the reference sketched once (timed apart, not in the comparison: it happens
  when the reference version is written), then, timed, ``compare(reference_sketches,
  current_frame)``: sketching the current data and every statistic and decision.
- ``scipy``: per column ``scipy.stats.ks_2samp`` (numeric) or ``chi2_contingency`` on the
  value counts (categorical, counted with Polars), flagged at p < 0.05. Then, not timed, the
  statistics headrace reports (KS, chi-square, Wasserstein / std, Jensen-Shannon) computed by
  SciPy on the full data, to measure agreement.
- ``evidently`` / ``evidently_forced``: ``bench/peers/drift_evidently.py`` in
  ``bench/.venvs/evidently`` (``python bench/peers/setup.py evidently``): ``Report([
  DataDriftPreset()]).run(current, reference)`` with its default tests (Wasserstein and
  Jensen-Shannon above 1,000 rows, threshold 0.1), or forced to KS / chi-square (p < 0.05).

The last stdout line of a child is JSON; results go to ``bench/results/drift-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import drift_data  # noqa: E402
from _runner import fmt, run_child  # noqa: E402

SIDES = ("headrace", "scipy", "evidently", "evidently_forced")


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- children --------------------------------------------------------------------------------


def child_headrace(folder: Path, repeats: int) -> dict[str, Any]:
    from headrace.quality.drift import compare, dump_sketches, sketch_frame

    started = time.perf_counter()
    reference = sketch_frame(pl.scan_parquet(folder / "reference.parquet"))
    sketch_seconds = time.perf_counter() - started
    current = pl.read_parquet(folder / "current.parquet")
    seconds, loads = [], []
    result = None
    for _ in range(repeats):
        loads.append(_load_avg()[0])
        started = time.perf_counter()
        result = compare(reference, current)
        seconds.append(time.perf_counter() - started)
    assert result is not None
    return {
        "tool": "headrace",
        "seconds": seconds,
        "load_1min": loads,
        "reference_sketch_seconds": sketch_seconds,
        "sketch_bytes": len(dump_sketches(reference)),
        "peak_rss_mib": _peak_rss_mib(),
        "columns": result.columns.to_dicts(),
        "flagged": result.drifted_columns,
    }


def _scipy_tests(ref: pl.DataFrame, cur: pl.DataFrame) -> dict[str, dict[str, float]]:
    """The timed part of the SciPy side: one test per column on the raw data."""
    from scipy import stats

    out = {}
    for name in ref.columns:
        if name in drift_data.NUMERIC:
            a = ref.get_column(name).drop_nulls().cast(pl.Float64).to_numpy()
            b = cur.get_column(name).drop_nulls().cast(pl.Float64).to_numpy()
            test = stats.ks_2samp(a, b)
            out[name] = {"statistic": float(test.statistic), "p_value": float(test.pvalue)}
        else:
            table = _counts(ref.get_column(name), cur.get_column(name))
            test = stats.chi2_contingency(table, correction=False)
            out[name] = {"statistic": float(test.statistic), "p_value": float(test.pvalue)}
    return out


def _counts(a: pl.Series, b: pl.Series) -> np.ndarray:
    """The 2 x k table of value counts (nulls left out) over the values of both sides."""
    left = a.drop_nulls().cast(pl.String).value_counts().rename({"count": "ref"})
    right = b.drop_nulls().cast(pl.String).value_counts().rename({"count": "cur"})
    joined = left.join(right, on=a.name, how="full", coalesce=True).fill_null(0)
    return np.vstack([joined.get_column("ref").to_numpy(), joined.get_column("cur").to_numpy()])


def child_scipy(folder: Path, repeats: int) -> dict[str, Any]:
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    ref = pl.read_parquet(folder / "reference.parquet")
    cur = pl.read_parquet(folder / "current.parquet")
    seconds, loads = [], []
    tests: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        loads.append(_load_avg()[0])
        started = time.perf_counter()
        tests = _scipy_tests(ref, cur)
        seconds.append(time.perf_counter() - started)
    # not timed: the other statistics headrace reports, by SciPy on the full data
    for name, row in tests.items():
        if name in drift_data.NUMERIC:
            a = ref.get_column(name).drop_nulls().cast(pl.Float64).to_numpy()
            b = cur.get_column(name).drop_nulls().cast(pl.Float64).to_numpy()
            row["wasserstein_norm"] = float(stats.wasserstein_distance(a, b) / np.std(a))
        else:
            table = _counts(ref.get_column(name), cur.get_column(name))
            row["jensenshannon"] = float(jensenshannon(table[0], table[1]))
    return {
        "tool": "scipy per column",
        "seconds": seconds,
        "load_1min": loads,
        "peak_rss_mib": _peak_rss_mib(),
        "columns": tests,
        "flagged": [name for name, row in tests.items() if row["p_value"] < 0.05],
    }


# -- comparing -------------------------------------------------------------------------------


def agreement(ours: list[dict[str, Any]], scipy: dict[str, dict[str, float]]) -> dict[str, Any]:
    """How far headrace's statistics are from SciPy's on the same full data."""
    ks_d, ks_p, wasser, chi_stat, chi_p, js = [], [], [], [], [], []
    for row in ours:
        theirs = scipy.get(row["column"])
        if theirs is None or row["statistic"] is None:
            continue
        if row["test"] == "ks":
            ks_d.append(abs(row["statistic"] - theirs["statistic"]))
            if theirs["p_value"] > 1e-12:
                ks_p.append(abs(row["p_value"] - theirs["p_value"]))
            if row["effect"] == "wasserstein":
                wasser.append(abs(row["effect_size"] - theirs["wasserstein_norm"]))
        else:
            chi_stat.append(abs(row["statistic"] - theirs["statistic"]) / theirs["statistic"])
            chi_p.append(abs(row["p_value"] - theirs["p_value"]))
            if row["effect"] == "jensenshannon":
                js.append(abs(row["effect_size"] - theirs["jensenshannon"]))

    def worst(values: list[float]) -> float | None:
        return max(values) if values else None

    return {
        "ks_statistic_max_abs_diff": worst(ks_d),
        "ks_p_value_max_abs_diff": worst(ks_p),
        "wasserstein_norm_max_abs_diff": worst(wasser),
        "chi_square_statistic_max_rel_diff": worst(chi_stat),
        "chi_square_p_value_max_abs_diff": worst(chi_p),
        "jensenshannon_max_abs_diff": worst(js),
    }


def _verdict(flagged: list[str]) -> dict[str, Any]:
    planted = set(drift_data.SHIFTED)
    return {
        "flagged": sorted(flagged),
        "missed": sorted(planted - set(flagged)),
        "false_alarms": sorted(set(flagged) - planted),
        "exact": set(flagged) == planted,
    }


def _per_column(runs: dict[str, dict[str, Any]]) -> None:
    """One line per column: what each side measured and whether it flagged it."""
    ok = {side: record for side, record in runs.items() if "error" not in record}
    if not ok:
        return
    ours = {row["column"]: row for row in ok.get("headrace", {}).get("columns", [])}
    header = f"\n{'column':<22} {'planted':<8}"
    for side in ok:
        header += f" {side:>24}"
    print(header)
    for name in (*drift_data.NUMERIC, *drift_data.CATEGORICAL):
        planted = "5 %" if name in drift_data.SHIFTED else ("1 % sd" if "tiny" in name else "")
        line = f"{name:<22} {planted:<8}"
        for side, record in ok.items():
            flagged = "*" if name in record["flagged"] else " "
            if side == "headrace":
                row = ours[name]
                cell = f"{row['effect_size']:.4f} p={row['p_value_adjusted']:.1e}"
            elif side == "scipy":
                cell = f"p={record['columns'][name]['p_value']:.1e}"
            else:
                row = record["columns"][name]
                cell = f"{row['method'][:12]} {row['value']:.3g}"
            line += f" {cell + ' ' + flagged:>24}"
        print(line)
    print("(* = flagged; headrace: effect size and adjusted p)")


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per process (headrace)")
    ap.add_argument("--scipy-repeats", type=int, default=2)
    ap.add_argument("--evidently-repeats", type=int, default=1)
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--smoke", action="store_true", help="CI: headrace only, 200 k rows")
    ap.add_argument("--child", choices=("headrace", "scipy"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child = child_headrace if args.child == "headrace" else child_scipy
        print(json.dumps(child(args.data, args.repeats)))
        return 0
    if args.smoke:
        args.rows, args.repeats, args.sides = 200_000, 3, "headrace"
    sides = [s for s in args.sides.split(",") if s]
    if not sides or any(s not in SIDES for s in sides):
        ap.error(f"--sides: choose from {', '.join(SIDES)}")
    folder = HERE / "data" / f"drift_{args.rows}"
    if args.smoke:
        folder = Path(tempfile.mkdtemp(prefix="headrace-drift-smoke-"))
    print(f"data {folder} ...", flush=True)
    drift_data.write(folder, args.rows)
    me = [sys.executable, str(Path(__file__).resolve())]
    logs = folder / "logs"
    runs: dict[str, dict[str, Any]] = {}
    for side in sides:
        print(f"{side} ...", flush=True)
        if side.startswith("evidently"):
            python = HERE / ".venvs" / "evidently" / "bin" / "python"
            cmd = [str(python), str(HERE / "peers" / "drift_evidently.py"), "--data", str(folder),
                   "--repeats", str(args.evidently_repeats)]  # fmt: skip
            if side == "evidently_forced":
                cmd.append("--forced")
        else:
            repeats = args.repeats if side == "headrace" else args.scipy_repeats
            cmd = [*me, "--child", side, "--data", str(folder), "--repeats", str(repeats)]
        runs[side] = run_child(cmd, log=logs / f"{side}.log", timeout=3600)
        if "error" in runs[side]:
            print(f"  {side} failed: {runs[side]['error'][:600]}")
    summary = []
    for side in sides:
        record = runs[side]
        ok = "error" not in record
        row = {
            "side": side,
            "median_s": statistics.median(record["seconds"]) if ok else None,
            "min_s": min(record["seconds"]) if ok else None,
            "peak_rss_mib": record.get("peak_rss_mib"),
            "version": record.get("version"),
            "verdict": _verdict(record["flagged"]) if ok else None,
            "error": None if ok else record["error"],
        }
        summary.append(row)
    base = {row["side"]: row for row in summary}
    ours = base.get("headrace", {}).get("median_s")
    for row in summary:
        row["x_headrace"] = row["median_s"] / ours if row["median_s"] and ours else None
    agree = None
    if "error" not in runs.get("headrace", {"error": 1}) and "error" not in runs.get(
        "scipy", {"error": 1}
    ):
        agree = agreement(runs["headrace"]["columns"], runs["scipy"]["columns"])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform, "load_avg": _load_avg()},
        "rows_per_side": args.rows,
        "columns": {"numeric": list(drift_data.NUMERIC),
                    "categorical": list(drift_data.CATEGORICAL)},
        "planted": list(drift_data.SHIFTED),
        "summary": summary,
        "agreement_with_scipy": agree,
        "runs": runs,
    }  # fmt: skip
    print(f"\n{'side':<17} {'median s':>9} {'x headrace':>10} {'peak MiB':>9}  flagged")
    for row in summary:
        verdict = row["verdict"]
        text = row["error"][:80] if verdict is None else (
            f"{'exactly the 5 planted' if verdict['exact'] else ''} "
            f"missed {verdict['missed']} false {verdict['false_alarms']}")  # fmt: skip
        print(f"{row['side']:<17} {fmt(row['median_s'], '.3f'):>9} "
              f"{fmt(row['x_headrace'], '.1f'):>10} {fmt(row['peak_rss_mib'], '.0f'):>9}  "
              f"{text}")  # fmt: skip
    if "headrace" in runs and "error" not in runs["headrace"]:
        record = runs["headrace"]
        print(f"headrace: reference sketched in {record['reference_sketch_seconds']:.2f} s "
              f"(not timed), {record['sketch_bytes']:,} bytes stored; load "
              f"{record['load_1min']}")  # fmt: skip
    if agree:
        print("agreement with SciPy:", json.dumps(agree))
    _per_column(runs)
    if args.smoke:
        shutil.rmtree(folder, ignore_errors=True)
        verdict = base["headrace"]["verdict"]
        if verdict is None or not verdict["exact"]:
            print("smoke: headrace failed or did not flag exactly the planted columns")
            return 1
        return 0
    out = HERE / "results" / f"drift-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
