"""headrace's side of the validation benchmark: ``hr.validate`` with a contract + quarantine.

    .venv/bin/python bench/validation_headrace.py --data bench/data/validation_10000000.parquet

Reads the Parquet file (not timed), then, timed: ``hr.validate(frame, contract)`` with the
contract below (the 14 rules of ``validation_spec``, rule ids identical to the spec's). The
result holds ``valid`` (rows passing every error check), ``quarantined`` (the failing rows
with their original columns plus the rule ids and reasons they failed), ``failures`` (one row
per failed rule per row) and ``checks`` (one row per rule with ``failed_rows``): all of it is
computed inside the timed call. The per-rule counts come from ``result.checks``.

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import validation_spec as spec  # noqa: E402


def _import_headrace() -> Any:
    try:
        import headrace
    except ImportError:  # not installed into the venv (yet): use the work tree
        sys.path.insert(0, str(ROOT / "src"))
        import headrace
    return headrace


def build_contract(hr: Any) -> Any:
    """The benchmark's contract; its rule ids are ``validation_spec.RULES``."""
    c = hr.checks
    return hr.Contract(
        "orders",
        fields=[
            hr.Field("order_id", "Int64", nullable=False, unique=True),
            hr.Field("customer_id", "Int64", nullable=False),
            hr.Field("amount", "Float64", checks=[c.between(spec.AMOUNT_MIN, spec.AMOUNT_MAX)]),
            hr.Field("quantity", "Int32", checks=[c.between(spec.QUANTITY_MIN, spec.QUANTITY_MAX)]),
            hr.Field("status", "String", checks=[c.isin(spec.STATUSES)]),
            hr.Field("country", "String", checks=[c.matches(spec.COUNTRY_PATTERN)]),
            hr.Field("email", "String", checks=[c.matches(spec.EMAIL_PATTERN)]),
            hr.Field(
                "created_at",
                "Datetime[UTC]",
                nullable=False,
                checks=[c.between(spec.CREATED_MIN, spec.CREATED_MAX)],
            ),
            hr.Field(
                "discount", "Float64", checks=[c.between(spec.DISCOUNT_MIN, spec.DISCOUNT_MAX)]
            ),
            hr.Field("sku", "String", checks=[c.length(spec.SKU_LENGTH, spec.SKU_LENGTH)]),
            hr.Field("is_gift", "Boolean"),
            hr.Field("score", "Float64", checks=[c.between(spec.SCORE_MIN, spec.SCORE_MAX)]),
        ],
        checks=[
            c.expression(
                "amount_covers_quantity",
                pl.col("amount") >= pl.col("quantity") * spec.COVER_FACTOR,
            )
        ],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the benchmark's Parquet file")
    ap.add_argument("--repeats", type=int, default=1, help="timed validations in this process")
    args = ap.parse_args(argv)

    hr = _import_headrace()
    contract = build_contract(hr)
    started = time.perf_counter()
    frame = pl.read_parquet(args.data)
    read_s = time.perf_counter() - started
    data_rss = spec.rss_kib()
    seconds: list[float] = []
    for _ in range(args.repeats):
        gc.collect()
        started = time.perf_counter()
        result = hr.validate(frame, contract)
        seconds.append(time.perf_counter() - started)
        counts = {
            rule: int(n) for rule, n in result.checks.select("rule", "failed_rows").iter_rows()
        }
        rows = (result.valid.height, result.quarantined.height, result.failures.height)
        del result
    from importlib.metadata import PackageNotFoundError, version

    try:
        hr_version = version("headrace")
    except PackageNotFoundError:
        hr_version = "work tree"
    spec.emit(
        {
            "tool": "headrace",
            "version": f"{getattr(hr, '__version__', hr_version)} (polars {pl.__version__})",
            "rows": frame.height,
            "seconds": seconds,
            "read_seconds": read_s,
            "failed_rows": counts,
            "failing_rows_total": rows[1],
            "valid_rows": rows[0],
            "failure_records": rows[2],
            "routes_rows": True,
            "data_rss_kib": data_rss,
            "peak_rss_kib": spec.peak_rss_kib(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
