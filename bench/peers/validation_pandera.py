"""Pandera (Polars backend) side of the validation benchmark.

Run in bench/.venvs/pandera (``python bench/peers/setup.py pandera``):

    bench/.venvs/pandera/bin/python bench/peers/validation_pandera.py \
        --data bench/data/validation_10000000.parquet

Reads the Parquet file into a ``polars.DataFrame`` (not timed; a DataFrame, not a LazyFrame,
because Pandera only runs data-level checks on a LazyFrame with
``PANDERA_VALIDATION_DEPTH=SCHEMA_AND_DATA``), then, timed: ``schema.validate(frame,
lazy=True)`` of a ``pandera.polars.DataFrameSchema`` with the 14 rules of ``validation_spec``,
catching ``SchemaErrors`` and counting its ``failure_cases`` rows per (column, check) -- also
inside the timed region, since that is how a user learns what failed. Pandera routes no rows:
it reports failure cases (with their row ``index``); the distinct failing rows are counted
from those indexes.

Rule mapping: ``nullable=False`` -> ``<col>.not_null`` (Pandera's ``not_nullable`` check);
``unique=True`` -> ``order_id.unique`` (Pandera's ``field_uniqueness``); columns without a
not-null rule are declared ``nullable=True`` (Pandera's default is False); the value checks
ignore nulls (``ignore_na=True``, the default); ``amount_covers_quantity`` is a DataFrame-level
custom ``Check`` returning a boolean Polars expression per row.

Prints one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import validation_spec as spec  # noqa: E402

PANDERA_CHECK_TO_KIND = {
    "not_nullable": "not_null",
    "field_uniqueness": "unique",
    "in_range": "between",
    "isin": "isin",
    "str_matches": "matches",
    "str_length": "length",
}


def build_schema() -> Any:
    import pandera.polars as pa
    import polars as pl

    def col(dtype: Any, *checks: Any, nullable: bool = True, unique: bool = False) -> Any:
        return pa.Column(dtype, checks=list(checks), nullable=nullable, unique=unique)

    check = pa.Check
    return pa.DataFrameSchema(
        {
            "order_id": col(pl.Int64, nullable=False, unique=True),
            "customer_id": col(pl.Int64, nullable=False),
            "amount": col(pl.Float64, check.in_range(spec.AMOUNT_MIN, spec.AMOUNT_MAX)),
            "quantity": col(pl.Int32, check.in_range(spec.QUANTITY_MIN, spec.QUANTITY_MAX)),
            "status": col(pl.String, check.isin(list(spec.STATUSES))),
            "country": col(pl.String, check.str_matches(spec.COUNTRY_PATTERN)),
            "email": col(pl.String, check.str_matches(spec.EMAIL_PATTERN)),
            "created_at": col(
                pl.Datetime("us", "UTC"),
                check.in_range(spec.CREATED_MIN, spec.CREATED_MAX),
                nullable=False,
            ),
            "discount": col(pl.Float64, check.in_range(spec.DISCOUNT_MIN, spec.DISCOUNT_MAX)),
            "sku": col(pl.String, check.str_length(spec.SKU_LENGTH, spec.SKU_LENGTH)),
            "is_gift": col(pl.Boolean),
            "score": col(pl.Float64, check.in_range(spec.SCORE_MIN, spec.SCORE_MAX)),
        },
        checks=[
            check(
                lambda data: data.lazyframe.select(
                    pl.col("amount") >= pl.col("quantity") * spec.COVER_FACTOR
                ),
                name="amount_covers_quantity",
            )
        ],
    )


def rule_id(column: Any, check: str) -> str:
    """The spec's rule id of one Pandera failure case (column, check name)."""
    name = check.split("(", maxsplit=1)[0]
    if column is None or name == "amount_covers_quantity":
        return name
    return f"{column}.{PANDERA_CHECK_TO_KIND.get(name, name)}"


def validate(schema: Any, frame: Any) -> tuple[dict[str, int], int | None, int]:
    """(failing rows per rule, distinct failing rows, failure-case rows)."""
    import pandera.errors
    import polars as pl

    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return dict.fromkeys(spec.RULES, 0), 0, 0
    per_check = cases.group_by("column", "check").agg(
        pl.len().alias("n"), pl.col("index").n_unique().alias("rows")
    )
    counts: dict[str, int] = dict.fromkeys(spec.RULES, 0)
    for column, check, _n, rows in per_check.iter_rows():
        rule = rule_id(column, str(check))
        counts[rule] = counts.get(rule, 0) + int(rows)
    distinct = cases["index"].drop_nulls().n_unique() if "index" in cases.columns else None
    return counts, distinct, cases.height


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the benchmark's Parquet file")
    ap.add_argument("--repeats", type=int, default=1, help="timed validations in this process")
    args = ap.parse_args()
    os.environ.setdefault("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA")

    from importlib.metadata import version

    import polars as pl

    schema = build_schema()
    started = time.perf_counter()
    frame = pl.read_parquet(args.data)
    read_s = time.perf_counter() - started
    data_rss = spec.rss_kib()
    seconds: list[float] = []
    for _ in range(args.repeats):
        gc.collect()
        started = time.perf_counter()
        counts, distinct, cases = validate(schema, frame)
        seconds.append(time.perf_counter() - started)
    spec.emit(
        {
            "tool": "pandera",
            "version": f"{version('pandera')} (polars {pl.__version__})",
            "rows": frame.height,
            "seconds": seconds,
            "read_seconds": read_s,
            "failed_rows": counts,
            "failing_rows_total": distinct,
            "valid_rows": None,
            "failure_records": cases,
            "routes_rows": False,
            "data_rss_kib": data_rss,
            "peak_rss_kib": spec.peak_rss_kib(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
