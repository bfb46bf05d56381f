"""Great Expectations 1.x (pandas) side of the validation benchmark.

Run in bench/.venvs/gx (``python bench/peers/setup.py gx``):

    bench/.venvs/gx/bin/python bench/peers/validation_gx.py \
        --data bench/data/validation_10000000.parquet

Set-up, not timed: an ephemeral data context, a pandas data source with a dataframe asset and
a whole-dataframe batch definition, an expectation suite with the 14 rules of
``validation_spec`` (one expectation each, the rule id in its ``meta``) and a validation
definition; the Parquet file is read with ``pandas.read_parquet`` (pyarrow; the nullable
int64 columns become float64 with NaN, strings become ``object``). Timed:
``validation_definition.run(batch_parameters={"dataframe": frame})`` with the default
``SUMMARY`` result format, plus the derived column that the cross-column rule needs
(below), plus reading ``unexpected_count`` per expectation. GX routes no rows and, at this
result format, does not say which rows failed, so there is no count of distinct failing rows.

Expectations: ``ExpectColumnValuesToNotBeNull`` (the ``*.not_null`` rules),
``ExpectColumnValuesToBeUnique``, ``ExpectColumnValuesToBeBetween`` (inclusive bounds; the
created_at bounds are tz-aware datetimes), ``ExpectColumnValuesToBeInSet``,
``ExpectColumnValuesToMatchRegex``, ``ExpectColumnValueLengthsToEqual``. GX's value
expectations skip missing values (None/NaN/NaT), which is the spec's null semantics. GX 1.x
has no row-expression expectation for pandas (``UnexpectedRowsExpectation`` is SQL-only), so
``amount_covers_quantity`` is ``ExpectColumnPairValuesAToBeGreaterThanB(amount, _min_amount,
or_equal=True)`` over a column ``_min_amount = quantity * 0.01`` added to the frame inside
the timed region.

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

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network calls
DERIVED = "_min_amount"


def build(result_format: str) -> Any:
    """The validation definition (context, data source, suite) ready to run on a frame."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset("orders")
    batch = asset.add_batch_definition_whole_dataframe("all")

    def between(column: str, lo: Any, hi: Any) -> Any:
        return gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=lo, max_value=hi, meta={"rule": f"{column}.between"}
        )

    def not_null(column: str) -> Any:
        return gxe.ExpectColumnValuesToNotBeNull(column=column, meta={"rule": f"{column}.not_null"})

    expectations = [
        not_null("order_id"),
        gxe.ExpectColumnValuesToBeUnique(column="order_id", meta={"rule": "order_id.unique"}),
        not_null("customer_id"),
        between("amount", spec.AMOUNT_MIN, spec.AMOUNT_MAX),
        between("quantity", spec.QUANTITY_MIN, spec.QUANTITY_MAX),
        gxe.ExpectColumnValuesToBeInSet(
            column="status", value_set=list(spec.STATUSES), meta={"rule": "status.isin"}
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="country", regex=spec.COUNTRY_PATTERN, meta={"rule": "country.matches"}
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="email", regex=spec.EMAIL_PATTERN, meta={"rule": "email.matches"}
        ),
        not_null("created_at"),
        between("created_at", spec.CREATED_MIN, spec.CREATED_MAX),
        between("discount", spec.DISCOUNT_MIN, spec.DISCOUNT_MAX),
        gxe.ExpectColumnValueLengthsToEqual(
            column="sku", value=spec.SKU_LENGTH, meta={"rule": "sku.length"}
        ),
        between("score", spec.SCORE_MIN, spec.SCORE_MAX),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="amount",
            column_B=DERIVED,
            or_equal=True,
            meta={"rule": "amount_covers_quantity"},
        ),
    ]
    suite = context.suites.add(gx.ExpectationSuite(name="orders", expectations=expectations))
    definition = gx.ValidationDefinition(name="orders", data=batch, suite=suite)
    definition = context.validation_definitions.add(definition)
    return definition, result_format


def validate(built: Any, frame: Any) -> tuple[dict[str, int], list[str]]:
    """(unexpected rows per rule, problems: expectations that raised)."""
    definition, result_format = built
    frame[DERIVED] = frame["quantity"] * spec.COVER_FACTOR
    result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    counts: dict[str, int] = {}
    problems: list[str] = []
    for item in result.results:
        rule = item.expectation_config.meta["rule"]
        if item.exception_info and item.exception_info.get("raised_exception"):
            problems.append(f"{rule}: {item.exception_info.get('exception_message')}")
            continue
        counts[rule] = int(item.result.get("unexpected_count", 0) or 0)
    return counts, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the benchmark's Parquet file")
    ap.add_argument("--repeats", type=int, default=1, help="timed validations in this process")
    ap.add_argument("--result-format", default="SUMMARY", help="GX result format (SUMMARY)")
    args = ap.parse_args()

    import logging
    from importlib.metadata import version

    import pandas as pd

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    built = build(args.result_format)
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    frame = pd.read_parquet(args.data)
    read_s = time.perf_counter() - started
    data_rss = spec.rss_kib()
    seconds: list[float] = []
    for _ in range(args.repeats):
        frame = frame.drop(columns=[DERIVED], errors="ignore")
        gc.collect()
        started = time.perf_counter()
        counts, problems = validate(built, frame)
        seconds.append(time.perf_counter() - started)
    spec.emit(
        {
            "tool": "gx",
            "version": f"{version('great_expectations')} (pandas {pd.__version__})",
            "rows": len(frame),
            "seconds": seconds,
            "setup_seconds": setup_s,
            "read_seconds": read_s,
            "failed_rows": counts,
            "failing_rows_total": None,
            "valid_rows": None,
            "routes_rows": False,
            "result_format": args.result_format,
            "problems": problems,
            "data_rss_kib": data_rss,
            "peak_rss_kib": spec.peak_rss_kib(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
