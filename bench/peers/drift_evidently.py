"""Evidently's DataDriftPreset on the drift benchmark's data (runs in bench/.venvs/evidently).

    bench/.venvs/evidently/bin/python bench/peers/drift_evidently.py --data DIR [--forced]

Reads ``reference.parquet`` and ``current.parquet`` with pandas (not timed), declares the
column types (the benchmark's numeric and categorical lists), then times
``Report([DataDriftPreset()]).run(current, reference)``: Evidently's default tests (above
1,000 rows: normalised Wasserstein for numbers, Jensen-Shannon for categories, threshold 0.1)
or, with ``--forced``, KS and chi-square (drift at p < 0.05). Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from the benchmark

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drift_data import CATEGORICAL, NUMERIC


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--forced", action="store_true", help="KS / chi-square instead of defaults")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(args.data / "reference.parquet")
    current = pd.read_parquet(args.data / "current.parquet")
    definition = DataDefinition(
        numerical_columns=list(NUMERIC), categorical_columns=list(CATEGORICAL)
    )
    options = {"num_method": "ks", "cat_method": "chisquare"} if args.forced else {}
    seconds = []
    snapshot: Any = None
    for _ in range(args.repeats):
        started = time.perf_counter()
        ref = Dataset.from_pandas(reference, data_definition=definition)
        cur = Dataset.from_pandas(current, data_definition=definition)
        snapshot = Report([DataDriftPreset(**options)]).run(cur, ref)
        seconds.append(time.perf_counter() - started)
    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        method, threshold, value = config["method"], config["threshold"], metric["value"]
        p_value_test = "p_value" in method or method in {"ks", "chisquare", "z"}
        drifted = value < threshold if p_value_test else value >= threshold
        columns[config["column"]] = {
            "method": method,
            "value": float(value),
            "threshold": float(threshold),
            "drifted": bool(drifted),
        }
    print(
        json.dumps(
            {
                "tool": "evidently DataDriftPreset" + (" (KS / chi-square)" if args.forced else ""),
                "version": evidently.__version__,
                "seconds": seconds,
                "median_s": statistics.median(seconds),
                "peak_rss_mib": _peak_rss_mib(),
                "columns": columns,
                "flagged": [name for name, row in columns.items() if row["drifted"]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
