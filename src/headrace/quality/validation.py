"""The Polars backend of data contracts: validate a frame in one pass, split off bad rows.

All row checks of a contract become one set of boolean expressions evaluated together (one
``with_columns`` over the data); all dataset checks become one aggregation; both are collected
in the same call so Polars can share the scan. The results are data:

* ``valid`` — the rows that pass every ``error`` row check (typed as the contract says);
* ``quarantined`` — every other row, unchanged, plus ``_hr_row`` (its position in the input),
  ``_hr_rules`` (the failed rule ids) and ``_hr_reasons`` (a reason code per failed rule);
  ``valid.height + quarantined.height`` always equals the input's height;
* ``checks`` — one row per check: failed rows, pass rate, whether it passed;
* ``failures`` — one row per (row, failed check): row, column, rule, reason, severity, value.

Quality score (in [0, 1]): a weighted mean over checks, weight 1 for ``error`` and 0.5 for
``warn`` checks; a row check contributes its pass rate (the share of rows passing it), a
dataset check 1 if it passed and 0 if not. A contract without checks scores 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from headrace.core.contract import Check, Contract, Level, Severity
from headrace.errors import ContractError, QualityGateError
from headrace.quality.coercion import coerced, temporal_format

__all__ = ["DEFAULT_GATE", "REASONS", "ValidationResult", "validate", "validate_stream"]

DEFAULT_GATE = 0.9
"""Default gate threshold: the brief's alert rule, quality score < 0.9."""

ROW_INDEX = "_hr_row"
RULES = "_hr_rules"
REASONS_COLUMN = "_hr_reasons"

REASONS: Mapping[str, str] = {
    "not_null": "null",
    "type": "type_mismatch",
    "between": "out_of_range",
    "isin": "not_in_set",
    "matches": "pattern_mismatch",
    "length": "bad_length",
    "unique": "duplicate",
    "expression": "expression_false",
    "references": "missing_reference",
}
_WEIGHTS = {Severity.ERROR: 1.0, Severity.WARN: 0.5}


@dataclass(frozen=True)
class ValidationResult:
    """What validating one frame against one contract found."""

    contract: str
    rows: int
    valid: pl.DataFrame
    quarantined: pl.DataFrame
    checks: pl.DataFrame
    failures: pl.DataFrame
    score: float
    valid_rows: int = -1
    """Rows passing every error check (``valid`` is empty when they went to a file)."""

    def __post_init__(self) -> None:
        if self.valid_rows < 0:
            object.__setattr__(self, "valid_rows", self.valid.height)

    @property
    def failed_error_checks(self) -> list[str]:
        """Rule ids of ``error`` dataset checks that failed."""
        failed = self.checks.filter(
            (pl.col("level") == Level.DATASET.value)
            & (pl.col("severity") == Severity.ERROR.value)
            & ~pl.col("passed")
        )
        return failed["rule"].to_list()

    def passes_gate(self, threshold: float = DEFAULT_GATE) -> bool:
        """True when the score reaches ``threshold`` and no ``error`` dataset check failed."""
        return self.score >= threshold and not self.failed_error_checks

    def gate(self, threshold: float = DEFAULT_GATE, *, what: str = "") -> None:
        """Raise :class:`QualityGateError` unless :meth:`passes_gate`."""
        if self.passes_gate(threshold):
            return
        subject = what or f"data validated against contract {self.contract!r}"
        problems = []
        if self.score < threshold:
            problems.append(f"quality score {self.score:.3f} is below the gate {threshold:g}")
        if self.failed_error_checks:
            problems.append(f"error checks failed: {', '.join(self.failed_error_checks)}")
        worst = self.checks.filter(~pl.col("passed")).sort("pass_rate").head(3)["rule"].to_list()
        hint = f"; worst checks: {', '.join(worst)}" if worst else ""
        msg = f"{subject} fails its quality gate: {'; '.join(problems)}{hint}"
        raise QualityGateError(msg)


def validate(
    data: pl.DataFrame | pl.LazyFrame,
    contract: Contract,
    *,
    now: datetime | None = None,
    lookups: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
) -> ValidationResult:
    """Validate ``data`` against ``contract`` in one pass; see the module docs for the result.

    ``lookups`` holds the datasets that ``references`` checks name.
    """
    frame = data.lazy()
    schema = frame.collect_schema()
    plan = _compile(contract, schema, lookups)
    try:
        raw = data.collect() if isinstance(data, pl.LazyFrame) else data
        typed = _coerce(raw, schema, plan.casts)
        masks = typed.hstack(raw.select(plan.raw_nulls)).select(plan.masks).select(plan.columns)
        agg_row = typed.select(plan.aggregates).row(0) if plan.aggregates else ()
    except pl.exceptions.PolarsError as exc:
        culprit = _failing_check(
            frame, contract, plan.row_checks, plan.dataset_checks, schema, plan.keys
        )
        msg = f"contract {contract.name!r} could not run on this data: {str(exc).splitlines()[0]}"
        if culprit:
            msg = f"check {culprit!r} of {msg}; check the column types (or coerce the field)"
        raise ContractError(msg) from exc

    rows = raw.height
    failed_counts = masks.select((~pl.all()).sum()).row(0) if plan.columns else ()
    is_valid = (
        masks.select(pl.all_horizontal(plan.error_masks)).to_series()
        if plan.error_masks
        else pl.Series([True] * rows, dtype=pl.Boolean)
    )
    # Every row that failed anything (error or warn), found once; the quarantine and the
    # failure cases are cut from this small frame instead of scanning the data per check.
    failing = (
        pl.concat(
            [raw.with_row_index(ROW_INDEX), masks, is_valid.alias("__valid").to_frame()],
            how="horizontal",
        ).filter(~pl.all_horizontal(plan.columns))
        if plan.columns
        else raw.with_row_index(ROW_INDEX).head(0).with_columns(__valid=pl.lit(value=True))
    )
    return _result(
        contract, plan, typed.filter(is_valid), failing, (rows, *failed_counts, *agg_row), now
    )


def validate_stream(
    data: pl.LazyFrame,
    contract: Contract,
    *,
    valid_out: Path | None = None,
    now: datetime | None = None,
    lookups: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
) -> ValidationResult:
    """Validate a lazy scan in Polars' streaming engine, for data larger than memory.

    The same checks, masks and results as :func:`validate`, but the data is never held whole:
    one streaming pass counts failures and computes the dataset checks, one collects the rows
    that failed something (the quarantine and the failure cases, which must fit in memory),
    and the valid rows are streamed to the Parquet file ``valid_out`` (when given; the
    result's ``valid`` is then empty and ``valid_rows`` counts them). ``unique`` checks need
    every key at once and so hold the key columns in memory.
    """
    schema = data.collect_schema()
    plan = _compile(contract, schema, lookups)
    layouts = _layouts(data.head(200).collect(), schema, plan.casts)
    raw_names = {name: f"__raw_{name}" for name in plan.casts}

    def typed(name: str, dtype: pl.DataType) -> pl.Expr:
        fast = coerced(name, schema[name], dtype, layouts.get(name))
        if layouts.get(name) is None:
            return fast
        # Values in another layout than the sampled one are parsed again, inferring.
        return pl.coalesce(fast, coerced(name, schema[name], dtype))

    evaluated = (
        data.with_row_index(ROW_INDEX)
        .with_columns(
            *(pl.col(name).alias(raw) for name, raw in raw_names.items()), *plan.raw_nulls
        )
        .with_columns(typed(name, dtype).alias(name) for name, dtype in plan.casts.items())
        .with_columns(plan.masks)
        .with_columns(
            (pl.all_horizontal(plan.error_masks) if plan.error_masks else pl.lit(value=True)).alias(
                "__valid"
            )
        )
    )
    counts = [(~pl.col(m)).sum() for m in plan.columns]
    raw_columns = [pl.col(raw_names.get(name, name)).alias(name) for name in schema]
    failing_query = evaluated.filter(
        ~pl.all_horizontal(plan.columns) if plan.columns else pl.lit(value=False)
    ).select(pl.col(ROW_INDEX), *raw_columns, *plan.columns, "__valid")
    valid_query = evaluated.filter(pl.col("__valid")).select(list(schema))
    try:
        summary = evaluated.select(pl.len(), *counts, *plan.aggregates).collect(engine="streaming")
        failing = failing_query.collect(engine="streaming")
        if valid_out is not None:
            valid_out.parent.mkdir(parents=True, exist_ok=True)
            valid_query.sink_parquet(valid_out, engine="streaming")
            valid = pl.DataFrame(schema=plan.typed_schema)
        else:
            valid = valid_query.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        msg = f"contract {contract.name!r} could not run on this data: {str(exc).splitlines()[0]}"
        raise ContractError(msg) from exc
    return _result(contract, plan, valid, failing, summary.row(0), now, streamed=True)


@dataclass(frozen=True)
class _Plan:
    """A contract compiled against a schema: the expressions both engines evaluate."""

    data_columns: list[str]
    row_checks: list[Check]
    dataset_checks: list[Check]
    casts: dict[str, pl.DataType]
    typed_schema: pl.Schema
    keys: dict[str, pl.Series]
    raw_nulls: list[pl.Expr]
    """``__raw_null_<column>`` per coerced column: was the value null before coercion?"""
    masks: list[pl.Expr]
    """``__ok<i>`` per row check, over the coerced columns and the raw-null flags."""
    columns: list[str]
    error_masks: list[pl.Expr]
    aggregates: list[pl.Expr]


def _compile(
    contract: Contract,
    schema: pl.Schema,
    lookups: Mapping[str, pl.DataFrame | pl.LazyFrame] | None,
) -> _Plan:
    """Check the contract against ``schema`` and build every mask and aggregate."""
    _check_columns(contract, schema)
    row_checks = contract.row_checks()
    dataset_checks = contract.dataset_checks()
    casts = _casts(contract, schema)
    typed_schema = pl.Schema({name: casts.get(name, dtype) for name, dtype in schema.items()})
    for check in row_checks + dataset_checks:
        _check_bounds(contract, check, typed_schema)
    keys = _reference_keys(contract, row_checks, lookups or {})
    # Type checks: a value fails when it was there before coercion and is null after. Every
    # other check reads the coerced values; quarantined rows keep them as they came in.
    masks = [
        (
            pl.col(f"__raw_null_{check.column}") | pl.col(check.column or "").is_not_null()
            if check.kind == "type"
            else _row_ok(check, typed_schema, contract, keys)
        ).alias(f"__ok{i}")
        for i, check in enumerate(row_checks)
    ]
    return _Plan(
        data_columns=list(schema),
        row_checks=row_checks,
        dataset_checks=dataset_checks,
        casts=casts,
        typed_schema=typed_schema,
        keys=keys,
        raw_nulls=[pl.col(name).is_null().alias(f"__raw_null_{name}") for name in casts],
        masks=masks,
        columns=[f"__ok{i}" for i in range(len(row_checks))],
        error_masks=[
            pl.col(f"__ok{i}")
            for i, check in enumerate(row_checks)
            if check.severity is Severity.ERROR
        ],
        aggregates=[_aggregate(check).alias(f"__agg{j}") for j, check in enumerate(dataset_checks)],
    )


def _result(  # noqa: PLR0917 - private helper with two callers
    contract: Contract,
    plan: _Plan,
    valid: pl.DataFrame,
    failing: pl.DataFrame,
    counts: tuple[Any, ...],
    now: datetime | None,
    *,
    streamed: bool = False,
) -> ValidationResult:
    """The result, from the rows that failed something and the counts.

    ``counts`` is (rows, failed rows per row check..., dataset aggregates...).
    """
    rows = int(counts[0])
    failed_counts = counts[1 : 1 + len(plan.row_checks)]
    agg_row = counts[1 + len(plan.row_checks) :]
    failures = _failures(failing, plan.row_checks)
    quarantined = _quarantine(failing, failures, plan.data_columns)
    results = [
        _row_result(check, int(failed), rows)
        for check, failed in zip(plan.row_checks, failed_counts, strict=True)
    ]
    moment = now or datetime.now(UTC)
    results += [
        _dataset_result(check, value, rows, moment)
        for check, value in zip(plan.dataset_checks, agg_row, strict=True)
    ]
    return ValidationResult(
        contract=contract.name,
        rows=rows,
        valid=valid,
        quarantined=quarantined,
        checks=pl.DataFrame(results, schema=_CHECK_SCHEMA, orient="row"),
        failures=failures,
        score=_score(results),
        valid_rows=rows - quarantined.height if streamed else valid.height,
    )


# -- compiling checks ---------------------------------------------------------------------------


def _failing_check(  # noqa: PLR0917 - private helper with one caller
    frame: pl.LazyFrame,
    contract: Contract,
    row_checks: list[Check],
    dataset_checks: list[Check],
    schema: pl.Schema,
    keys: Mapping[str, pl.Series],
) -> str | None:
    """The first check that cannot even plan on an empty frame of this schema."""
    empty = frame.head(0)
    for check in row_checks:
        try:
            empty.select(_row_ok(check, schema, contract, keys)).collect()
        except pl.exceptions.PolarsError:
            return check.rule
    for check in dataset_checks:
        try:
            empty.select(_aggregate(check)).collect()
        except pl.exceptions.PolarsError:
            return check.rule
    return None


def _check_columns(contract: Contract, schema: pl.Schema) -> None:
    known = list(schema)
    for field in contract.fields:
        if field.name not in schema:
            msg = (
                f"the data has no column {field.name!r}, which contract {contract.name!r} "
                f"declares (columns: {', '.join(known)})"
            )
            raise ContractError(msg)
        declared = field.polars_dtype
        actual = schema[field.name]
        if declared is not None and not field.coerce and not _same_type(declared, actual):
            msg = (
                f"column {field.name!r} is {actual}, but contract {contract.name!r} says "
                f"{field.dtype}: fix the data, or set coerce=True on the field to cast it"
            )
            raise ContractError(msg)
    for check in contract.all_checks():
        missing = [c for c in check.columns if c not in schema]
        if missing:
            msg = (
                f"check {check.rule!r} of contract {contract.name!r} reads column(s) "
                f"{missing} that the data does not have (columns: {', '.join(known)})"
            )
            raise ContractError(msg)
    if not contract.allow_extra_columns:
        names = {f.name for f in contract.fields}
        # _hr_* columns are headrace's own (source positions), not the data's.
        extra = [c for c in known if c not in names and not c.startswith("_hr_")]
        if extra:
            msg = f"contract {contract.name!r} allows no extra columns, but the data has {extra}"
            raise ContractError(msg)


def _same_type(declared: pl.DataType, actual: pl.DataType) -> bool:
    if isinstance(declared, pl.Datetime) and isinstance(actual, pl.Datetime):
        return declared.time_zone is None or declared.time_zone == actual.time_zone
    if isinstance(declared, pl.Decimal) and isinstance(actual, pl.Decimal):
        return True
    return bool(declared == actual)


def _check_bounds(contract: Contract, check: Check, schema: pl.Schema) -> None:
    if check.kind != "between" or check.column is None:
        return
    dtype = schema[check.column]
    for bound in (check.params.get("min"), check.params.get("max")):
        if bound is None:
            continue
        ok = (
            (dtype.is_numeric() and isinstance(bound, int | float) and not isinstance(bound, bool))
            or (dtype.is_temporal() and isinstance(bound, date | datetime))
            or (dtype == pl.String and isinstance(bound, str))
        )
        if not ok:
            msg = (
                f"check {check.rule!r} of contract {contract.name!r}: bound {bound!r} "
                f"({type(bound).__name__}) does not fit column {check.column!r} of type {dtype}"
            )
            raise ContractError(msg)


def _layouts(
    sample: pl.DataFrame, schema: pl.Schema, casts: Mapping[str, pl.DataType]
) -> dict[str, str | None]:
    """For text columns coerced to dates or timestamps, the layout their sample fits."""
    return {
        name: temporal_format(sample[name].drop_nulls().head(200), dtype)
        for name, dtype in casts.items()
        if schema[name] == pl.String and isinstance(dtype, pl.Datetime | pl.Date)
    }


def _coerce(raw: pl.DataFrame, schema: pl.Schema, casts: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """``raw`` with the coerced columns converted (each converted once)."""
    layouts = _layouts(raw, schema, casts)
    typed = raw.with_columns(
        coerced(name, schema[name], dtype, layouts.get(name)).alias(name)
        for name, dtype in casts.items()
    )
    # Values in another layout than the sampled one: parse those columns again, inferring.
    again = [
        name
        for name, layout in layouts.items()
        if layout is not None and typed[name].null_count() > raw[name].null_count()
    ]
    if again:
        retried = raw.select(coerced(name, schema[name], casts[name]).alias(name) for name in again)
        typed = typed.with_columns(
            pl.coalesce(typed[name], retried[name]).alias(name) for name in again
        )
    return typed


def _casts(contract: Contract, schema: pl.Schema) -> dict[str, pl.DataType]:
    """Column -> declared type, for the fields that coerce."""
    return {
        f.name: f.polars_dtype
        for f in contract.fields
        if f.coerce and f.polars_dtype is not None and f.name in schema
    }


def _reference_keys(
    contract: Contract, checks: list[Check], lookups: Mapping[str, pl.DataFrame | pl.LazyFrame]
) -> dict[str, pl.Series]:
    """For each ``references`` rule, the distinct keys it accepts."""
    keys: dict[str, pl.Series] = {}
    for check in checks:
        if check.kind != "references":
            continue
        name = check.params["dataset"]
        column = str(check.params.get("column") or check.column)
        if name not in lookups:
            msg = (
                f"check {check.rule!r} of contract {contract.name!r} references dataset "
                f"{name!r}, which was not given: pass lookups={{{name!r}: frame}}, or validate "
                "inside a pipeline where the dataset exists"
            )
            raise ContractError(msg)
        frame = lookups[name].lazy()
        if column not in frame.collect_schema():
            msg = f"check {check.rule!r}: dataset {name!r} has no column {column!r}"
            raise ContractError(msg)
        keys[check.rule] = frame.select(pl.col(column).unique()).collect().to_series()
    return keys


def _row_ok(
    check: Check,
    schema: pl.Schema,
    contract: Contract,
    keys: Mapping[str, pl.Series] | None = None,
) -> pl.Expr:
    p = check.params
    col = pl.col(check.column) if check.column else None
    if check.kind == "not_null":
        assert col is not None
        return col.is_not_null()
    if check.kind == "unique":
        parts = [pl.col(c) for c in check.columns]
        key = parts[0] if len(parts) == 1 else pl.struct(parts)
        return ~key.is_duplicated() | pl.any_horizontal([k.is_null() for k in parts])
    if check.kind == "type":
        assert col is not None
        assert check.column is not None
        dtype = contract.field(check.column).polars_dtype
        assert dtype is not None
        return col.is_null() | coerced(check.column, schema[check.column], dtype).is_not_null()
    if check.kind == "expression":
        expr: pl.Expr = p["expr"]
        return expr.fill_null(check.nulls == "pass")
    assert col is not None
    if check.kind == "between":
        lo, hi = p.get("min"), p.get("max")
        closed = p.get("inclusive", "both")
        low_ok = (
            pl.lit(value=True)
            if lo is None
            else (col >= lo if closed in ("both", "left") else col > lo)
        )
        high_ok = (
            pl.lit(value=True)
            if hi is None
            else (col <= hi if closed in ("both", "right") else col < hi)
        )
        ok = low_ok & high_ok
    elif check.kind == "isin":
        ok = col.is_in(pl.Series(list(p["values"]), dtype=schema[check.column or ""]).implode())
    elif check.kind == "references":
        allowed = (keys or {})[check.rule]
        ok = col.is_in(allowed.cast(schema[check.column or ""], strict=False).implode())
    elif check.kind == "matches":
        ok = col.str.contains(p["pattern"])
    elif check.kind == "length":
        length = col.str.len_chars()
        ok = pl.lit(value=True)
        if p.get("min") is not None:
            ok = ok & (length >= p["min"])
        if p.get("max") is not None:
            ok = ok & (length <= p["max"])
    else:  # pragma: no cover - Check() refuses unknown kinds
        msg = f"no Polars implementation for check kind {check.kind!r}"
        raise ContractError(msg)
    if check.nulls == "pass":
        return ok | col.is_null()
    return ok.fill_null(value=False)


def _aggregate(check: Check) -> pl.Expr:
    p = check.params
    if check.kind == "row_count":
        return pl.len()
    if check.kind == "aggregate":
        expr: pl.Expr = p["expr"]
        return expr
    col = pl.col(check.columns[0])
    if check.kind == "freshness":
        return col.max()
    stat = p["stat"]
    exprs = {
        "mean": col.mean(),
        "std": col.std(),
        "min": col.min(),
        "max": col.max(),
        "median": col.median(),
        "null_share": col.is_null().mean(),
    }
    if stat == "quantile":
        return col.quantile(p.get("quantile") or 0.5)
    return exprs[stat]


# -- results -------------------------------------------------------------------------------------

_CHECK_SCHEMA = {
    "rule": pl.String,
    "kind": pl.String,
    "columns": pl.String,
    "level": pl.String,
    "severity": pl.String,
    "failed_rows": pl.Int64,
    "rows": pl.Int64,
    "pass_rate": pl.Float64,
    "mostly": pl.Float64,
    "passed": pl.Boolean,
    "observed": pl.String,
    "description": pl.String,
}


def _row_result(check: Check, failed: int, rows: int) -> tuple[Any, ...]:
    rate = 1.0 if rows == 0 else (rows - failed) / rows
    return (
        check.rule, check.kind, ",".join(check.columns), Level.ROW.value, check.severity.value,
        failed, rows, rate, check.mostly, rate >= check.mostly, None, check.describe(),
    )  # fmt: skip


def _dataset_result(check: Check, value: Any, rows: int, now: datetime) -> tuple[Any, ...]:
    p = check.params
    if check.kind == "freshness":
        if value is None:
            passed = False
        else:
            newest = value if value.tzinfo else value.replace(tzinfo=UTC)
            passed = now - newest <= p["max_age"]
    else:
        passed = value is not None and _within(value, p.get("min"), p.get("max"))
    return (
        check.rule, check.kind, ",".join(check.columns), Level.DATASET.value,
        check.severity.value, 0 if passed else rows, rows, 1.0 if passed else 0.0, check.mostly,
        passed, None if value is None else str(value), check.describe(),
    )  # fmt: skip


def _within(value: Any, lo: Any, hi: Any) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _score(results: list[tuple[Any, ...]]) -> float:
    if not results:
        return 1.0
    weights = [_WEIGHTS[Severity(r[4])] for r in results]
    parts = [w * r[7] for w, r in zip(weights, results, strict=True)]
    return float(sum(parts) / sum(weights))


def _quarantine(failing: pl.DataFrame, failures: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The rows that failed an error check, with their rule ids and reasons in check order."""
    reasons = (
        failures.filter(pl.col("severity") == Severity.ERROR.value)
        .group_by("row", maintain_order=True)
        .agg(pl.col("rule").alias(RULES), pl.col("reason").alias(REASONS_COLUMN))
    )
    bad = failing.filter(~pl.col("__valid")).select(*columns, pl.col(ROW_INDEX).cast(pl.Int64))
    return bad.join(reasons, left_on=ROW_INDEX, right_on="row", how="left", maintain_order="left")


def _failures(evaluated: pl.DataFrame, checks: list[Check]) -> pl.DataFrame:
    parts = []
    for i, check in enumerate(checks):
        value = pl.col(check.column).cast(pl.String) if check.column else pl.lit(None, pl.String)
        parts.append(
            evaluated.filter(~pl.col(f"__ok{i}")).select(
                pl.col(ROW_INDEX).cast(pl.Int64).alias("row"),
                pl.lit(",".join(check.columns)).alias("column"),
                pl.lit(check.rule).alias("rule"),
                pl.lit(REASONS[check.kind]).alias("reason"),
                pl.lit(check.severity.value).alias("severity"),
                value.alias("value"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={"row": pl.Int64, "column": pl.String, "rule": pl.String,
                    "reason": pl.String, "severity": pl.String, "value": pl.String}
        )  # fmt: skip
    return pl.concat(parts).sort("row", maintain_order=True)
